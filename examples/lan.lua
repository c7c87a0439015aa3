-- lan.lua: the article's outside world, simulated so the examples run anywhere.
-- The host's uplink enp0s5 (10.211.55.32/24) is one end of a veth pair; the other end
-- is eth0 of a namespace "laptop" holding the article's laptop address 10.6.213.149.
-- The laptop knows the host's LAN, but has no route back to container subnets: that
-- is why the article needs MASQUERADE.
--
--   local lan = require("lan")      -- found next to the script
--   local laptop = lan.uplink()

local M = {
  uplink_dev = "enp0s5",
  host_ip = "10.211.55.32",
  laptop_ip = "10.6.213.149",
}

function M.uplink()
  local laptop = netns.add("laptop")
  laptop:link("lo"):up()
  local enp, eth0 = veth.add(M.uplink_dev, "eth0", { peer_ns = laptop })
  enp:addr(M.host_ip .. "/24"):up()
  eth0:addr(M.laptop_ip .. "/24"):up()
  route.add("10.211.55.0/24", { dev = "eth0", ns = laptop })   -- the laptop reaches the host's LAN
  route.add("10.6.213.0/24", { dev = M.uplink_dev })           -- and the host reaches the laptop
  return laptop
end

--- A tiny HTTP server that answers every GET with "hello from NAME" (python3, like
--- the article's `python3 -m http.server 80`, but saying who answered).
function M.serve(ns, port)
  local name = ns.name or "host"
  local code = [[
import http.server, sys
name = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from %s\n" % name).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
]]
  local p = ns:spawn({ "python3", "-c", code, tostring(port), name })
  -- Wait until it listens.
  for _ = 1, 100 do
    if ns:tcp("127.0.0.1", port, { timeout = 0.2 }) then return p end
    netscript.sleep(0.05)
  end
  error(("the http server in %s did not start listening on port %d"):format(name, port), 2)
end

return M
