-- netscript.docker: Docker's bridge network driver (userland proxy off), made of the
-- public API.
--
--   local docker = require("netscript.docker")
--   local net = docker.network{ name = "ns_br", subnet = "175.18.0.0/24" }
--   local c1 = net:container("ns1")        -- 175.18.0.2
--   net:publish(8088, c1, 80)              -- outside, host address and 127.0.0.1 -> c1:80
--
-- Everything here is made of the public API (bridge, veth, route, sysctl, fw), so it
-- is journaled and rolled back like any script, and `netscript plan` shows it.
--
-- The rules follow Docker's iptables driver (moby's generated rule docs,
-- integration/network/bridge/iptablesdoc, Docker 28): per namespace, once, the filter
-- chains DOCKER-USER and DOCKER-FORWARD (jumped to from FORWARD, in that order, first),
-- DOCKER-CT, DOCKER-INTERNAL, DOCKER-BRIDGE and DOCKER, and the nat chain DOCKER; per
-- network, its rules in those chains and its masquerading; per published port, a DNAT
-- in nat DOCKER, an ACCEPT in filter DOCKER, the hairpin MASQUERADE and (nat mode) a
-- raw-table DROP of packets routed directly to the container.

local M = {}

local function ip2int(s)
  local a, b, c, d = tostring(s):match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
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

-- What the module has set up in each namespace during this run (the chains, the
-- jumps to them, the published host ports), keyed by the namespace's name ("" for the
-- host).
local spaces = {}

local function ns_key(ns)
  if ns == nil then return "" end
  if type(ns) == "string" then return ns end
  return ns.name or ""
end

local FILTER_CHAINS = { "DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-INTERNAL", "DOCKER-USER" }

local function has_chain(tbl, chain, ns)
  for _, l in ipairs(fw.rules(tbl, { ns = ns })) do
    if l == "-N " .. chain then return true end
  end
  return false
end

-- The per-namespace part, once: forwarding (and the FORWARD policy, only when it was
-- off: Docker leaves a host that already routes alone), bridge netfilter, the chains
-- and the jumps to them.
local function setup_space(ns)
  local key = ns_key(ns)
  local sp = spaces[key]
  if sp then return sp end
  sp = { published = {}, forwarding_was_on = false }
  spaces[key] = sp
  sp.forwarding_was_on = tostring(sysctl.get("net.ipv4.ip_forward", { ns = ns })) == "1"
  if not sp.forwarding_was_on then
    sysctl.set("net.ipv4.ip_forward", 1, { ns = ns })
  end
  sysctl.set("net.bridge.bridge-nf-call-iptables", 1, { ns = ns })
  local o = { ns = ns }
  -- Chains another run already made in this namespace are shared, as Docker does.
  local made = has_chain("filter", "DOCKER-FORWARD", ns)
  local nat_made = has_chain("nat", "DOCKER", ns)
  fw.batch(function()
    if not sp.forwarding_was_on then
      fw.policy("filter", "FORWARD", "DROP", o)
    end
    if not made then
      for _, c in ipairs(FILTER_CHAINS) do fw.chain("filter", c, o) end
      fw.insert("filter", "FORWARD", "-j DOCKER-FORWARD", { ns = ns, pos = 1 })
      fw.insert("filter", "FORWARD", "-j DOCKER-USER", { ns = ns, pos = 1 })
      fw.append("filter", "DOCKER-FORWARD", "-j DOCKER-CT", o)
      fw.append("filter", "DOCKER-FORWARD", "-j DOCKER-INTERNAL", o)
      fw.append("filter", "DOCKER-FORWARD", "-j DOCKER-BRIDGE", o)
    end
    if not nat_made then
      fw.chain("nat", "DOCKER", o)
      fw.append("nat", "PREROUTING", "-m addrtype --dst-type LOCAL -j DOCKER", o)
      -- Without the userland proxy the jump is taken for 127.0.0.0/8 too.
      fw.append("nat", "OUTPUT", "-m addrtype --dst-type LOCAL -j DOCKER", o)
    end
  end)
  return sp
end

local Network = {}
Network.__index = Network

--- docker.network{name=, subnet=[, gateway=][, ns=][, icc=true][, internal=false]
---   [, gateway_mode="nat"]}: a bridge network, as `docker network create`.
function M.network(opts)
  if type(opts) ~= "table" or type(opts.name) ~= "string" then
    error("docker.network: give a table with name= and subnet=, e.g. docker.network{ name = \"ns_br\", subnet = \"175.18.0.0/24\" }", 2)
  end
  check_opts("docker.network", opts, {
    name = true, subnet = true, gateway = true, ns = true, icc = true, internal = true, gateway_mode = true,
  })
  local base, plen, size = parse_subnet(opts.subnet)
  local gw = opts.gateway or int2ip(base + 1)
  local gwn = ip2int(gw)
  if not gwn or gwn <= base or gwn >= base + size - 1 then
    error(("docker.network: gateway %s is not a host address of %s"):format(tostring(gw), opts.subnet), 2)
  end
  for _, k in ipairs({ "icc", "internal" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      error(("docker.network: %s must be true or false, not %s"):format(k, tostring(opts[k])), 2)
    end
  end
  local mode = opts.gateway_mode or "nat"
  if mode ~= "nat" and mode ~= "routed" then
    error(("docker.network: gateway_mode must be \"nat\" or \"routed\", not %q"):format(tostring(mode)), 2)
  end
  local ns = opts.ns
  local net = setmetatable({
    name = opts.name, subnet = opts.subnet, gateway = gw, ns = ns,
    icc = opts.icc ~= false, internal = opts.internal == true, gateway_mode = mode,
    base = base, plen = plen, size = size, used = { [gwn] = true }, ips = {}, direct_drop = {}, targets = {},
  }, Network)
  net.bridge = bridge.add(opts.name, { ns = ns })
  net.bridge:addr(("%s/%d"):format(gw, plen)):up()
  local sp = setup_space(ns)
  net.space = sp
  local br, o = opts.name, { ns = ns }
  fw.batch(function()
    -- Without the userland proxy, 127.0.0.1 reaches published ports: packets from
    -- the loopback may leave through the bridge, masqueraded (below).
    sysctl.set(("net.ipv4.conf.%s.route_localnet"):format(br), 1, o)
    if net.internal then
      -- Docker's --internal: nothing in from outside the subnet, nothing out.
      fw.append("filter", "DOCKER-INTERNAL", ("! -s %s -o %s -j DROP"):format(opts.subnet, br), o)
      fw.append("filter", "DOCKER-INTERNAL", ("! -d %s -i %s -j DROP"):format(opts.subnet, br), o)
    else
      -- Replies to what the containers started; anything else that is routed to the
      -- bridge goes through DOCKER, which accepts the published ports and drops the
      -- rest (from the outside, the host's other links and the other networks).
      fw.append("filter", "DOCKER-CT", ("-o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"):format(br), o)
      fw.append("filter", "DOCKER-BRIDGE", ("-o %s -j DOCKER"):format(br), o)
      fw.append("filter", "DOCKER", ("! -i %s -o %s -j DROP"):format(br, br), o)
    end
    if not net.icc then
      -- enable_icc=false: containers of this network do not reach each other.
      fw.append("filter", "DOCKER-FORWARD", ("-i %s -o %s -j DROP"):format(br, br), o)
    end
    fw.append("filter", "DOCKER-FORWARD", ("-i %s -j ACCEPT"):format(br), o)
    if not net.internal then
      fw.append("nat", "POSTROUTING", ("-o %s -m addrtype --src-type LOCAL -j MASQUERADE"):format(br), o)
      if mode == "nat" then
        -- Not between neighbours: they see each other's own addresses.
        fw.append("nat", "POSTROUTING", ("-s %s ! -o %s -j MASQUERADE"):format(opts.subnet, br), o)
      end
    end
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
--- in 15 bytes, on the bridge, in hairpin mode), the next free address (or ip=) and,
--- unless the network is internal, a default route through the gateway.
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
  outside:master(self.bridge)
  -- Hairpin mode on the bridge port, as Docker without the userland proxy: a
  -- container reaches its own published port through the host's address.
  local ok, bridge_port = pcall(function() return outside.bridge_port end)
  if ok and bridge_port then
    outside:bridge_port{ hairpin = true }
  end
  outside:up()
  if not self.internal then
    route.add("default", { via = self.gateway, ns = ns })
  end
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

-- "8000-8010" -> 8000, 8010; 8000 -> 8000, 8000; nil when not a port or range.
local function port_range(p, zero_ok)
  local lo, hi
  if math.type(p) == "integer" then
    lo, hi = p, p
  elseif type(p) == "string" then
    local a, b = p:match("^(%d+)%-(%d+)$")
    if not a then a = p:match("^(%d+)$"); b = a end
    lo, hi = tonumber(a), tonumber(b)
  end
  if not lo or lo > hi or hi > 65535 or (lo < 1 and not (zero_ok and lo == 0 and hi == 0)) then return nil end
  return lo, hi
end

-- The holder of host port `port`/`proto` on `host_ip` ("" for every address), if any.
local function holder(sp, proto, host_ip, port)
  for k, h in pairs(sp.published) do
    local pr, hip, pt = k:match("^(%a+)/([^/]*)/(%d+)$")
    if pr == proto and tonumber(pt) == port and (hip == "" or host_ip == "" or hip == host_ip) then return h end
  end
  return nil
end

--- net:publish(host_port, container, port[, {proto="tcp", host_ip=}]) -> net, host_port:
--- `docker run -p [HOST_IP:]HOST_PORT:PORT`. host_port 0 picks a free port; "A-B" ranges
--- map one-to-one (or, for one container port, pick a free port of the range).
function Network:publish(host_port, c, port, opts)
  check_opts("net:publish", opts, { proto = true, host_ip = true })
  opts = opts or {}
  local proto = opts.proto or "tcp"
  if proto ~= "tcp" and proto ~= "udp" then
    error(("net:publish: proto must be \"tcp\" or \"udp\", not %q"):format(tostring(proto)), 2)
  end
  local hlo, hhi = port_range(host_port, true)
  if not hlo then
    error(("net:publish: %s is not a host port (1 to 65535, 0 for any free one, or a range like \"8000-8010\")"):format(tostring(host_port)), 2)
  end
  local plo, phi = port_range(port, false)
  if not plo then
    error(("net:publish: %s is not a port number (1 to 65535, or a range like \"80-90\")"):format(tostring(port)), 2)
  end
  local host_ip = opts.host_ip or ""
  if host_ip == "0.0.0.0" then host_ip = "" end
  if host_ip ~= "" and not ip2int(host_ip) then
    error(("net:publish: host_ip %s is not an IPv4 address"):format(tostring(host_ip)), 2)
  end
  if self.internal then
    error(("net:publish: network %s is internal: nothing on it can be published"):format(self.name), 2)
  end
  local ip, name = self:ip(c), (type(c) == "string" and c or c.name)
  local sp = self.space
  local n = phi - plo + 1
  -- The host ports: as given, one-to-one with a range of container ports, or the
  -- first free one (of the range, or of the dynamic range for 0).
  local first
  if hlo ~= 0 and hhi - hlo + 1 == n then
    first = hlo
    for hp = hlo, hhi do
      local h = holder(sp, proto, host_ip, hp)
      if h then
        error(("net:publish: host port %d/%s is already allocated (published by %s to %s)"):format(hp, proto, h.by, h.to), 2)
      end
    end
  elseif n == 1 then
    local lo, hi = hlo, hhi
    if hlo == 0 then
      local r = tostring(sysctl.get("net.ipv4.ip_local_port_range", { ns = self.ns }))
      lo, hi = r:match("^(%d+)%s+(%d+)")
      lo, hi = tonumber(lo) or 49153, tonumber(hi) or 65535
    end
    for hp = lo, hi do
      if not holder(sp, proto, host_ip, hp) then first = hp; break end
    end
    if not first then
      error(("net:publish: no free host port in %d-%d/%s"):format(lo, hi, proto), 2)
    end
    hhi = first
  else
    error(("net:publish: host ports %s and container ports %s are ranges of different sizes"):format(tostring(host_port), tostring(port)), 2)
  end

  local br, ns, o = self.name, self.ns, { ns = self.ns }
  fw.batch(function()
    for i = 0, n - 1 do
      local hp, cp = first + i, plo + i
      local to = ("%s:%d"):format(ip, cp)
      local dst = host_ip ~= "" and ("-d %s/32 "):format(host_ip) or ""
      local m = ("-p %s -m %s"):format(proto, proto)
      fw.append("nat", "DOCKER", ("%s%s --dport %d -j DNAT --to-destination %s"):format(dst, m, hp, to), o)
      local target = ("%s/%s"):format(to, proto)
      if not self.targets[target] then
        -- Once per container port, however many host ports lead to it.
        fw.insert("filter", "DOCKER", ("-d %s/32 ! -i %s -o %s %s --dport %d -j ACCEPT"):format(ip, br, br, m, cp), { ns = ns, pos = 1 })
        -- A container reaching its own published port (hairpin) sees the gateway.
        fw.append("nat", "POSTROUTING", ("-s %s/32 -d %s/32 %s --dport %d -j MASQUERADE"):format(ip, ip, m, cp), o)
        self.targets[target] = true
      end
      if host_ip:match("^127%.") then
        -- Docker >= 28: a port published on a loopback address is not for other hosts.
        fw.append("raw", "PREROUTING", ("-d %s/32 ! -i lo %s --dport %d -j DROP"):format(host_ip, m, hp), o)
      end
      sp.published[("%s/%s/%d"):format(proto, host_ip, hp)] = { by = name, to = target }
    end
    -- Docker >= 28: packets routed directly to the container from elsewhere than its
    -- bridge are dropped (only the published ports, through the host, reach it),
    -- unless the network is in routed mode.
    if self.gateway_mode == "nat" and not self.direct_drop[ip] then
      fw.append("raw", "PREROUTING", ("-d %s/32 ! -i %s -j DROP"):format(ip, br), o)
      self.direct_drop[ip] = true
    end
  end)
  return self, first
end

return M
