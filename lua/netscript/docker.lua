-- netscript.docker: Docker's bridge network mode, as a library.
-- Filled in by the article issue; see docs/api.md.
local M = {}
return M
