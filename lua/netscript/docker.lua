-- netscript.docker: Docker's bridge network mode, as the article builds it by hand.
--
--   local docker = require("netscript.docker")
--   local net = docker.network{ name = "ns_br", subnet = "175.18.0.0/24" }
--   local c1 = net:container("ns1")        -- 175.18.0.2
--   net:publish(8088, c1, 80)              -- outside, host address and 127.0.0.1 -> c1:80
--
-- Everything here is made of the public API (bridge, veth, route, sysctl, fw), so it
-- is journaled and rolled back like any script, and `netscript plan` shows it.

local M = {}

local function ip2int(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if not (a and a < 256 and b < 256 and c < 256 and d < 256) then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function int2ip(n)
  return ("%d.%d.%d.%d"):format(n // 16777216 % 256, n // 65536 % 256, n // 256 % 256, n % 256)
end

local function parse_subnet(s)
  local addr, len = tostring(s):match("^([%d.]+)/(%d+)$")
  local base, plen = addr and ip2int(addr), tonumber(len)
  if not (base and plen and plen >= 8 and plen <= 30) then
    error(("docker.network: subnet %q must be an IPv4 network like 175.18.0.0/24 (prefix 8 to 30)"):format(tostring(s)), 3)
  end
  local size = 2 ^ (32 - plen) // 1
  if base % size ~= 0 then
    error(("docker.network: subnet %q has host bits set; did you mean %s/%d?"):format(s, int2ip(base - base % size), plen), 3)
  end
  return base, plen, size
end

local function check_opts(fname, opts, allowed)
  for k in pairs(opts or {}) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown option %q (known options: %s)"):format(fname, tostring(k), table.concat(names, ", ")), 3)
    end
  end
end

local Network = {}
Network.__index = Network

--- docker.network{name=, subnet=[, gateway=][, ns=]}: a bridge with the gateway address,
--- IP forwarding, MASQUERADE for the subnet, and a FORWARD chain with policy DROP that
--- lets containers out (and each other), replies back in, and published ports in.
function M.network(opts)
  if type(opts) ~= "table" or type(opts.name) ~= "string" then
    error("docker.network: give a table with name= and subnet=, e.g. docker.network{ name = \"ns_br\", subnet = \"175.18.0.0/24\" }", 2)
  end
  check_opts("docker.network", opts, { name = true, subnet = true, gateway = true, ns = true })
  local base, plen, size = parse_subnet(opts.subnet)
  local gw = opts.gateway or int2ip(base + 1)
  local gwn = ip2int(gw)
  if not gwn or gwn <= base or gwn >= base + size - 1 then
    error(("docker.network: gateway %s is not a host address of %s"):format(tostring(gw), opts.subnet), 2)
  end
  local ns = opts.ns
  local net = setmetatable({
    name = opts.name, subnet = opts.subnet, gateway = gw, ns = ns,
    base = base, plen = plen, size = size, used = { [gwn] = true }, ips = {},
    localnet = false,
  }, Network)
  net.bridge = bridge.add(opts.name, { ns = ns })
  net.bridge:addr(("%s/%d"):format(gw, plen)):up()
  sysctl.set("net.ipv4.ip_forward", 1, { ns = ns })
  local br = opts.name
  fw.batch(function()
    fw.policy("filter", "FORWARD", "DROP", { ns = ns })
    fw.append("filter", "FORWARD", ("-i %s -j ACCEPT"):format(br), { ns = ns })
    -- Replies to what the containers started (Docker's rule; the article's optional
    -- `-o ns_br -j ACCEPT`, but only for established connections).
    fw.append("filter", "FORWARD", ("-o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"):format(br), { ns = ns })
    fw.append("nat", "POSTROUTING", ("-s %s -j MASQUERADE"):format(opts.subnet), { ns = ns })
  end)
  return net
end

function Network:_next_ip()
  for n = self.base + 2, self.base + self.size - 2 do
    if not self.used[n] then return n end
  end
  error(("docker: network %s (%s) has no free address left"):format(self.name, self.subnet), 3)
end

--- net:container(name[, {ip=, dev=, host_dev=}]) -> Netns: a namespace with lo up, a veth
--- pair (dev, default "veth0", inside; host_dev, default "veth_"..name, which must fit
--- in 15 bytes, on the bridge),
--- the next free address (or ip=) and a default route through the gateway.
function Network:container(name, opts)
  check_opts("net:container", opts, { ip = true, dev = true, host_dev = true })
  opts = opts or {}
  local n
  if opts.ip then
    n = ip2int(opts.ip)
    if not n or n <= self.base or n >= self.base + self.size - 1 then
      error(("net:container(%q): %s is not a host address of %s"):format(name, tostring(opts.ip), self.subnet), 2)
    end
    if self.used[n] then
      error(("net:container(%q): %s is already taken on %s"):format(name, opts.ip, self.name), 2)
    end
  else
    n = self:_next_ip()
  end
  local ip = int2ip(n)
  local dev, host_dev = opts.dev or "veth0", opts.host_dev or ("veth_" .. name)
  if #host_dev > 15 then
    error(("net:container(%q): the host end's name %q is longer than 15 bytes; give a shorter one with host_dev="):format(name, host_dev), 2)
  end
  local ns = netns.add(name)
  ns:link("lo"):up()
  local inside, outside = veth.add(dev, host_dev, { ns = ns, peer_ns = self.ns })
  inside:addr(("%s/%d"):format(ip, self.plen)):up()
  outside:master(self.bridge):up()
  route.add("default", { via = self.gateway, ns = ns })
  self.used[n] = true
  self.ips[name] = ip
  return ns
end

--- net:ip(container) -> the container's address on this network.
function Network:ip(c)
  local name = type(c) == "string" and c or c.name
  local ip = self.ips[name]
  if not ip then error(("net:ip: %s is not a container of network %s"):format(tostring(name), self.name), 2) end
  return ip
end

--- net:publish(host_port, container, port[, {proto="tcp"}]): `docker run -p`. The port is
--- reachable from outside (PREROUTING DNAT), from the host's own addresses (OUTPUT DNAT)
--- and from 127.0.0.1 (OUTPUT DNAT, route_localnet on the bridge, MASQUERADE of
--- 127.0.0.0/8 out of the bridge: what CNI's portmap plugin does).
function Network:publish(host_port, c, port, opts)
  check_opts("net:publish", opts, { proto = true })
  local proto = (opts and opts.proto) or "tcp"
  if proto ~= "tcp" and proto ~= "udp" then
    error(("net:publish: proto must be \"tcp\" or \"udp\", not %q"):format(tostring(proto)), 2)
  end
  for _, p in ipairs({ host_port, port }) do
    if math.type(p) ~= "integer" or p < 1 or p > 65535 then
      error(("net:publish: %s is not a port number (1 to 65535)"):format(tostring(p)), 2)
    end
  end
  local ip, br, ns = self:ip(c), self.name, self.ns
  local to = ("%s:%d"):format(ip, port)
  local m = ("-p %s -m %s --dport %d"):format(proto, proto, host_port)
  fw.batch(function()
    fw.append("nat", "PREROUTING", ("%s -m addrtype --dst-type LOCAL -j DNAT --to-destination %s"):format(m, to), { ns = ns })
    fw.append("filter", "FORWARD", ("-d %s/32 ! -i %s -o %s -p %s -m %s --dport %d -j ACCEPT"):format(ip, br, br, proto, proto, port), { ns = ns })
    fw.append("nat", "OUTPUT", ("! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL %s -j DNAT --to-destination %s"):format(m, to), { ns = ns })
    fw.append("nat", "OUTPUT", ("-d 127.0.0.0/8 %s -j DNAT --to-destination %s"):format(m, to), { ns = ns })
    if not self.localnet then
      sysctl.set(("net.ipv4.conf.%s.route_localnet"):format(br), 1, { ns = ns })
      fw.append("nat", "POSTROUTING", ("-s 127.0.0.0/8 -o %s -j MASQUERADE"):format(br), { ns = ns })
      self.localnet = true
    end
  end)
  return self
end

return M
