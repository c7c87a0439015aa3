-- netscript.pingall: the reachability matrix of a list of namespaces (Mininet's
-- `pingall`), with the reason for each pair that fails, from `trace`.
--
--   local r = netscript.pingall({ ns1, ns2, "laptop" })          -- ICMP echo
--   local r = netscript.pingall({ ns1, ns2 }, { tcp = 80 })       -- TCP connect
--   assert(r.ok[1][2], r.pairs[1].reason)
--
-- Each namespace is probed at its first IPv4 address on a link other than lo. Every
-- ordered pair gets one `Netns:trace` (from the kernel in a run, from the model in a
-- plan). The matrix is printed (unless quiet = true) and returned as data:
--   r.names       the namespaces' names, in the order given ("host" for the host)
--   r.addrs       their addresses (nil: none to probe)
--   r.ok[i][j]    whether names[i] got its answer from names[j] (nil on the diagonal)
--   r.pairs       one table per pair: from, to, addr, delivered, reason, trace
--   r.answered, r.total
--   tostring(r)   the printed table

local M = {}

local function label(ns)
  return ns.name or "host"
end

local function first_ipv4(ns)
  for _, l in ipairs(ns:links()) do
    if l.name ~= "lo" then
      for _, cidr in ipairs(l:addrs()) do
        local ip = cidr:match("^(%d+%.%d+%.%d+%.%d+)/")
        if ip then return ip end
      end
    end
  end
  return nil
end

local Result = {}
Result.__index = Result
Result.__tostring = function(r)
  local w = 4
  for _, n in ipairs(r.names) do w = math.max(w, #n) end
  local cell = "%-" .. w .. "s"
  local lines = { ("pingall%s: %d/%d answered"):format(r.what, r.answered, r.total) }
  local head = { cell:format("") }
  for _, n in ipairs(r.names) do head[#head + 1] = cell:format(n) end
  lines[#lines + 1] = table.concat(head, " "):gsub("%s+$", "")
  for i, from in ipairs(r.names) do
    local row = { cell:format(from) }
    for j = 1, #r.names do
      local v = r.ok[i][j]
      row[#row + 1] = cell:format(i == j and "-" or (v and "ok" or "X"))
    end
    lines[#lines + 1] = table.concat(row, " "):gsub("%s+$", "")
  end
  for _, p in ipairs(r.pairs) do
    if not p.delivered then
      lines[#lines + 1] = ("X %s -> %s (%s): %s"):format(p.from, p.to, p.addr or "no address", p.reason)
    end
  end
  return table.concat(lines, "\n")
end

function M.pingall(list, opts, ...)
  if select("#", ...) > 0 then
    error("netscript.pingall: unexpected extra argument: more arguments than it takes (its options go in one table, the last argument)", 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then
    error("netscript.pingall: the options must be a table, like { tcp = 80 }", 2)
  end
  for k in pairs(opts) do
    if k ~= "tcp" and k ~= "timeout" and k ~= "quiet" then
      error(("netscript.pingall: unknown option %q (known options: tcp, timeout, quiet)"):format(tostring(k)), 2)
    end
  end
  if type(list) ~= "table" or getmetatable(list) ~= nil or #list < 2 then
    error("netscript.pingall: give a list of at least two namespaces, like ({ns1, ns2})", 2)
  end
  local nss, names, addrs, seen = {}, {}, {}, {}
  for i, ns in ipairs(list) do
    if type(ns) == "string" then
      ns = ns == "host" and netns.host() or netns.get(ns)
    end
    nss[i] = ns
    names[i] = label(ns)
    if seen[names[i]] then
      error(("netscript.pingall: namespace %q is in the list twice"):format(names[i]), 2)
    end
    seen[names[i]] = true
    addrs[i] = first_ipv4(ns)
  end
  local probe = { tcp = opts.tcp, timeout = opts.timeout }
  local r = setmetatable({
    names = names, addrs = addrs, ok = {}, pairs = {}, answered = 0, total = 0,
    what = opts.tcp and (" (tcp " .. opts.tcp .. ")") or "",
  }, Result)
  for i, from in ipairs(nss) do
    r.ok[i] = {}
    for j = 1, #nss do
      if i ~= j then
        local p = { from = names[i], to = names[j], addr = addrs[j] }
        if addrs[j] then
          p.trace = from:trace(addrs[j], probe)
          p.delivered, p.reason = p.trace.delivered, p.trace.reason
        else
          p.delivered, p.reason = false, names[j] .. " has no IPv4 address to probe"
        end
        r.ok[i][j] = p.delivered
        r.total = r.total + 1
        if p.delivered then r.answered = r.answered + 1 end
        r.pairs[#r.pairs + 1] = p
      end
    end
  end
  if not opts.quiet then print(tostring(r)) end
  return r
end

return M
