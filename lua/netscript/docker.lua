-- netscript.docker: Docker's bridge network driver (userland proxy off), made of the
-- public API.
--
--   local docker = require("netscript.docker")
--   local net = docker.network{ name = "ns_br", subnet = "175.18.0.0/24" }
--   local c1 = net:container("ns1")        -- 175.18.0.2
--   net:publish(8088, c1, 80)              -- outside, host address and 127.0.0.1 -> c1:80
--
-- With subnet6 = "fd00:dead:beef::/64" the network is dual stack, as Docker's with
-- --ipv6 and ip6tables on: every container also gets an IPv6 address (the same host
-- number as its IPv4 one: .2 -> ::2) and default route, outbound IPv6 is masqueraded,
-- and the same chains and rules are made with ip6tables ({family = "ipv6"}); a port
-- published without host_ip is published on both families. [::1] is the exception:
-- IPv6 has no route_localnet, so a packet from ::1 never leaves the loopback and a
-- DNAT from [::1] cannot work (Docker uses its userland proxy there); from the host,
-- use one of its own IPv6 addresses (the gateway's, net.gateway6) instead.
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

-- IPv6 addresses as 8 groups of 16 bits.
local function ip6_groups(s)
  s = tostring(s)
  if not s:match("^[%x:]+$") or s:find(":::", 1, true) then return nil end
  local head, tail = s, nil
  local i = s:find("::", 1, true)
  if i then
    head, tail = s:sub(1, i - 1), s:sub(i + 2)
    if tail:find("::", 1, true) then return nil end
  end
  local function split(x)
    local t = {}
    if x == "" then return t end
    for g in (x .. ":"):gmatch("([^:]*):") do
      if #g == 0 or #g > 4 then return nil end
      t[#t + 1] = tonumber(g, 16)
    end
    return t
  end
  local h, t = split(head), split(tail or "")
  if not h or not t then return nil end
  if tail == nil then
    if #h ~= 8 then return nil end
    return h
  end
  if #h + #t > 7 then return nil end
  local out = {}
  for _, g in ipairs(h) do out[#out + 1] = g end
  for _ = 1, 8 - #h - #t do out[#out + 1] = 0 end
  for _, g in ipairs(t) do out[#out + 1] = g end
  return out
end

-- 8 groups as text, the way the kernel prints them (RFC 5952: the longest run of
-- two or more zero groups as "::").
local function ip6_text(g)
  local best, blen, i = nil, 1, 1
  while i <= 8 do
    if g[i] == 0 then
      local j = i
      while j < 8 and g[j + 1] == 0 do j = j + 1 end
      if j - i + 1 > blen then best, blen = i, j - i + 1 end
      i = j + 1
    else
      i = i + 1
    end
  end
  local function hex(a, b)
    local t = {}
    for k = a, b do t[#t + 1] = ("%x"):format(g[k]) end
    return table.concat(t, ":")
  end
  if not best then return hex(1, 8) end
  return hex(1, best - 1) .. "::" .. hex(best + blen, 8)
end

-- The address `n` hosts after `base` (groups), as text.
local function ip6_add(base, n)
  local g = { table.unpack(base) }
  local k = 8
  while n > 0 and k >= 1 do
    local v = g[k] + n % 65536
    n = n // 65536 + v // 65536
    g[k] = v % 65536
    k = k - 1
  end
  return ip6_text(g)
end

-- The mask of group k (1 to 8) of an IPv6 prefix of length plen.
local function mask16(plen, k)
  local bits = math.max(0, math.min(16, plen - (k - 1) * 16))
  return bits == 16 and 65535 or (65535 - (2 ^ (16 - bits) // 1 - 1))
end

local function parse_subnet6(s, plen4)
  local addr, len = tostring(s):match("^([%x:]+)/(%d+)$")
  local g, plen = addr and ip6_groups(addr), tonumber(len)
  if not (g and plen and plen >= 16 and plen <= 120) then
    error(("docker.network: subnet6 %q must be an IPv6 network like fd00:dead:beef::/64 (prefix 16 to 120)"):format(tostring(s)), 3)
  end
  if 128 - plen < 32 - plen4 then
    error(("docker.network: subnet6 %s is smaller than subnet (/%d): each container's IPv6 address has its IPv4 host number"):format(s, plen4), 3)
  end
  for k = 1, 8 do
    if g[k] & mask16(plen, k) ~= g[k] then
      error(("docker.network: subnet6 %q has host bits set"):format(s), 3)
    end
  end
  return g, plen
end

-- Refuses arguments after a function's options table (Lua would drop them).
local function no_more(fname, ...)
  if select("#", ...) > 0 then
    error(("%s: unexpected extra argument: more arguments than it takes (its options go in one table, the last argument)"):format(fname), 3)
  end
end

-- A value as an error shows it: a string quoted, a number, boolean, nil or handle as
-- tostring writes it, anything else by its type.
local function shown(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "number" or type(v) == "boolean" or v == nil or type(v) == "userdata" then return tostring(v) end
  return type(v)
end

local function check_opts(fname, opts, allowed)
  local names = {}
  for n in pairs(allowed) do names[#names + 1] = n end
  table.sort(names)
  if opts ~= nil and type(opts) ~= "table" then
    error(("%s: the options must be a table (known options: %s), not %s"):format(fname, table.concat(names, ", "), shown(opts)), 3)
  end
  for k in pairs(opts or {}) do
    if not allowed[k] then
      error(("%s: unknown option %q (known options: %s)"):format(fname, tostring(k), table.concat(names, ", ")), 3)
    end
  end
end

-- What the module has set up in each namespace during this run (the chains, the
-- jumps to them, the published host ports), keyed by the namespace's name ("" for the
-- host).
local spaces = {}

-- This run's networks, by namespace (`ns_key`), for the overlap check.
local networks = {}

-- The network of this run in `key` whose subnet (or subnet6) overlaps the one
-- given, and that subnet; nil when none does. Docker refuses such a network ("Pool
-- overlaps with other one on this address space").
local function overlapping(key, base, size, base6, plen6)
  for _, o in ipairs(networks[key] or {}) do
    if base < o.base + o.size and o.base < base + size then return o, o.subnet end
    if base6 and o.base6 then
      local plen, same = math.min(plen6, o.plen6), true
      for k = 1, 8 do
        same = same and (base6[k] & mask16(plen, k)) == (o.base6[k] & mask16(plen, k))
      end
      if same then return o, o.subnet6 end
    end
  end
end

local function ns_key(ns)
  if ns == nil then return "" end
  if type(ns) == "string" then return ns end
  return ns.name or ""
end

local FILTER_CHAINS = { "DOCKER", "DOCKER-BRIDGE", "DOCKER-CT", "DOCKER-FORWARD", "DOCKER-INTERNAL", "DOCKER-USER" }

local function has_chain(tbl, chain, ns, family)
  for _, l in ipairs(fw.rules(tbl, { ns = ns, family = family })) do
    if l == "-N " .. chain then return true end
  end
  return false
end

local function policy_of(tbl, chain, ns, family)
  for _, l in ipairs(fw.rules(tbl, { ns = ns, family = family })) do
    local p = l:match("^%-P " .. chain:gsub("%-", "%%-") .. " (%u+)$")
    if p then return p end
  end
end

-- The per-namespace part, once per family: forwarding (and the FORWARD policy, only
-- when it was off: Docker leaves a host that already routes alone), bridge netfilter,
-- the chains and the jumps to them.
local function setup_space(ns, family)
  family = family or "ipv4"
  local key = ns_key(ns)
  local sp = spaces[key]
  if not sp then
    sp = { published = {}, families = {} }
    spaces[key] = sp
  end
  if sp.families[family] then return sp end
  sp.families[family] = true
  local v6 = family == "ipv6"
  local fwd_key = v6 and "net.ipv6.conf.all.forwarding" or "net.ipv4.ip_forward"
  local forwarding_was_on = tostring(sysctl.get(fwd_key, { ns = ns })) == "1"
  -- Chains another run already made in this namespace are shared, as Docker does.
  -- Sharing them, this run also sets what that run set (forwarding, the FORWARD
  -- policy), to the value it has: in the host namespace that is journaled, so that
  -- when the other run goes down first the settings stay for this one (handed over,
  -- as its chains are: see "Trust and ownership" in docs/design.md).
  local made = has_chain("filter", "DOCKER-FORWARD", ns, family)
  local nat_made = has_chain("nat", "DOCKER", ns, family)
  if not forwarding_was_on or made then
    sysctl.set(fwd_key, 1, { ns = ns })
  end
  sysctl.set(v6 and "net.bridge.bridge-nf-call-ip6tables" or "net.bridge.bridge-nf-call-iptables", 1, { ns = ns })
  local o = { ns = ns, family = family }
  local shared_policy = made and forwarding_was_on and policy_of("filter", "FORWARD", ns, family)
  fw.batch(function()
    if not forwarding_was_on then
      fw.policy("filter", "FORWARD", "DROP", o)
    elseif shared_policy then
      fw.policy("filter", "FORWARD", shared_policy, o)
    end
    if not made then
      for _, c in ipairs(FILTER_CHAINS) do fw.chain("filter", c, o) end
      fw.insert("filter", "FORWARD", "-j DOCKER-FORWARD", { ns = ns, pos = 1, family = family })
      fw.insert("filter", "FORWARD", "-j DOCKER-USER", { ns = ns, pos = 1, family = family })
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

-- A network's own rules in one family: `subnet` and the bridge `br`.
local function network_rules(net, family, subnet)
  local br, o = net.name, { ns = net.ns, family = family }
  if net.internal then
    -- Docker's --internal: nothing in from outside the subnet, nothing out.
    fw.append("filter", "DOCKER-INTERNAL", ("! -s %s -o %s -j DROP"):format(subnet, br), o)
    fw.append("filter", "DOCKER-INTERNAL", ("! -d %s -i %s -j DROP"):format(subnet, br), o)
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
    if net.gateway_mode == "nat" then
      -- Not between neighbours: they see each other's own addresses.
      fw.append("nat", "POSTROUTING", ("-s %s ! -o %s -j MASQUERADE"):format(subnet, br), o)
    end
  end
end

local Network = {}
Network.__index = Network

-- Refuses a method called on something that is not a network of docker.network: a
-- dot for the colon (net.container("c1") passes "c1" as the network).
local function check_self(self, method, args)
  if getmetatable(self) ~= Network then
    error(("net:%s: call it with a colon (net:%s(%s)), not net.%s(...)"):format(method, method, args, method), 3)
  end
end

-- The name of a container argument (the Netns net:container returned, or its name),
-- or an error naming `fname`.
local function container_name(fname, c)
  if type(c) == "string" then return c end
  if type(c) == "userdata" then
    local s = tostring(c)
    if s == "netns.host()" then
      error(("%s: the host namespace is not a container"):format(fname), 3)
    end
    if s:sub(1, 6) == "Netns(" then return c.name end
  end
  error(("%s: expected a container (the Netns net:container returned, or its name), got %s"):format(fname, shown(c)), 3)
end

--- docker.network{name=, subnet=[, gateway=][, subnet6=][, gateway6=][, ns=][, icc=true]
---   [, internal=false][, gateway_mode="nat"]}: a bridge network, as `docker network
---   create` (with subnet6: `--ipv6 --subnet ...`, dual stack).
function M.network(opts, ...)
  no_more("docker.network", ...)
  if type(opts) ~= "table" or type(opts.name) ~= "string" or opts.subnet == nil then
    error("docker.network: give a table with name= and subnet=, e.g. docker.network{ name = \"ns_br\", subnet = \"175.18.0.0/24\" }", 2)
  end
  check_opts("docker.network", opts, {
    name = true, subnet = true, gateway = true, ns = true, icc = true, internal = true, gateway_mode = true,
    subnet6 = true, gateway6 = true,
  })
  for _, k in ipairs({ "subnet", "gateway", "subnet6", "gateway6", "gateway_mode" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      error(("docker.network: %s must be a string, not %s"):format(k, shown(opts[k])), 2)
    end
  end
  local ns_text = opts.ns ~= nil and tostring(opts.ns)
  if ns_text and type(opts.ns) ~= "string"
      and not (type(opts.ns) == "userdata" and (ns_text:sub(1, 6) == "Netns(" or ns_text == "netns.host()")) then
    error(("docker.network: ns must be a Netns or a namespace name, not %s"):format(shown(opts.ns)), 2)
  end
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
  local base6, plen6, gw6
  if opts.subnet6 ~= nil then
    base6, plen6 = parse_subnet6(opts.subnet6, plen)
    gw6 = ip6_add(base6, 1)
    if opts.gateway6 ~= nil then
      local g = ip6_groups(opts.gateway6)
      local ok = g ~= nil
      for k = 1, 8 do
        ok = ok and (g[k] & mask16(plen6, k)) == base6[k]
      end
      if not ok then
        error(("docker.network: gateway6 %s is not an address of %s"):format(tostring(opts.gateway6), opts.subnet6), 2)
      end
      gw6 = ip6_text(g)
    end
  elseif opts.gateway6 ~= nil then
    error("docker.network: gateway6 needs subnet6", 2)
  end
  local mode = opts.gateway_mode or "nat"
  if mode ~= "nat" and mode ~= "routed" then
    error(("docker.network: gateway_mode must be \"nat\" or \"routed\", not %q"):format(tostring(mode)), 2)
  end
  local ns = opts.ns
  local other, theirs = overlapping(ns_key(ns), base, size, base6, plen6)
  if other then
    error(("docker.network: %s overlaps network %s (%s); Docker refuses it too (\"Pool overlaps with other one on this address space\")"):format(
      theirs == other.subnet and opts.subnet or opts.subnet6, other.name, theirs), 2)
  end
  local net = setmetatable({
    name = opts.name, subnet = opts.subnet, gateway = gw, ns = ns,
    icc = opts.icc ~= false, internal = opts.internal == true, gateway_mode = mode,
    base = base, plen = plen, size = size, used = { [gwn] = true }, ips = {}, direct_drop = {}, targets = {},
    subnet6 = opts.subnet6 and ip6_text(base6) .. "/" .. plen6, gateway6 = gw6, base6 = base6, plen6 = plen6,
    ips6 = {},
  }, Network)
  net.bridge = bridge.add(opts.name, { ns = ns })
  net.bridge:addr(("%s/%d"):format(gw, plen))
  if gw6 then
    net.bridge:addr(("%s/%d"):format(gw6, plen6))
  end
  net.bridge:up()
  local sp = setup_space(ns)
  if gw6 then setup_space(ns, "ipv6") end
  net.space = sp
  local br, o = opts.name, { ns = ns }
  fw.batch(function()
    -- Without the userland proxy, 127.0.0.1 reaches published ports: packets from
    -- the loopback may leave through the bridge, masqueraded (below).
    sysctl.set(("net.ipv4.conf.%s.route_localnet"):format(br), 1, o)
    network_rules(net, "ipv4", opts.subnet)
    if gw6 then network_rules(net, "ipv6", net.subnet6) end
  end)
  local key = ns_key(ns)
  networks[key] = networks[key] or {}
  table.insert(networks[key], net)
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
--- unless the network is internal, a default route through the gateway; on a dual
--- stack network also the IPv6 address with the same host number and an IPv6 default
--- route.
function Network:container(name, opts, ...)
  check_self(self, "container", "name")
  if type(name) ~= "string" then
    error(("net:container: expected the container's name (a string), like net:container(\"ns1\"), got %s"):format(shown(name)), 2)
  end
  no_more("net:container", ...)
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
  for _, k in ipairs({ "dev", "host_dev" }) do
    local v = opts[k]
    if v ~= nil and type(v) ~= "string" then
      error(("net:container(%q): %s must be a link name (a string), not %s"):format(name, k, shown(v)), 2)
    end
  end
  local dev, host_dev = opts.dev or "veth0", opts.host_dev or ("veth_" .. name)
  if #host_dev > 15 then
    error(("net:container(%q): the host end's name %q is longer than 15 bytes; give a shorter one with host_dev="):format(name, host_dev), 2)
  end
  local ns = netns.add(name)
  -- The pair is made, or the namespace goes again: a name veth.add refuses (or one
  -- taken already) leaves nothing behind, and a retry finds the name free.
  local made, inside, outside = pcall(function()
    ns:link("lo"):up()
    return veth.add(dev, host_dev, { ns = ns, peer_ns = self.ns })
  end)
  if not made then
    pcall(ns.del, ns)
    -- veth.add's error, without the position it carries (the caller's line is put
    -- in front again, for net:container).
    local why = tostring(inside):gsub("^[^\n]-:%d+: ", "", 1)
    error(("net:container(%q): %s"):format(name, why), 2)
  end
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
  if self.base6 then
    local ip6 = ip6_add(self.base6, n - self.base)
    inside:addr(("%s/%d"):format(ip6, self.plen6))
    if not self.internal then
      route.add("default", { via = self.gateway6, ns = ns })
    end
    self.ips6[name] = ip6
  end
  self.used[n] = true
  self.ips[name] = ip
  return ns
end

--- net:ip(container) -> the container's address on this network.
function Network:ip(c)
  check_self(self, "ip", "container")
  local name = container_name("net:ip", c)
  local ip = self.ips[name]
  if not ip then error(("net:ip: %s is not a container of network %s"):format(tostring(name), self.name), 2) end
  return ip
end

--- net:ip6(container) -> the container's IPv6 address on this (dual stack) network.
function Network:ip6(c)
  check_self(self, "ip6", "container")
  local name = container_name("net:ip6", c)
  if not self.base6 then error(("net:ip6: network %s has no subnet6"):format(self.name), 2) end
  local ip = self.ips6[name]
  if not ip then error(("net:ip6: %s is not a container of network %s"):format(tostring(name), self.name), 2) end
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
function Network:publish(host_port, c, port, opts, ...)
  check_self(self, "publish", "host_port, container, port")
  no_more("net:publish", ...)
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
  if host_ip == "0.0.0.0" or host_ip == "::" then host_ip = "" end
  local host_ip6
  if host_ip ~= "" and not ip2int(host_ip) then
    local g = ip6_groups(host_ip)
    if not g then
      error(("net:publish: host_ip %s is not an IPv4 or IPv6 address"):format(tostring(host_ip)), 2)
    end
    if not self.base6 then
      error(("net:publish: host_ip %s is an IPv6 address, but network %s has no subnet6"):format(host_ip, self.name), 2)
    end
    host_ip6 = ip6_text(g)
    if host_ip6 == "::1" then
      error("net:publish: host_ip ::1: IPv6 has no route_localnet, so a packet from ::1 never leaves the loopback and a DNAT from [::1] cannot reach a container (Docker uses its userland proxy there); publish on another of the host's IPv6 addresses (net.gateway6, or all of them without host_ip)", 2)
    end
    host_ip = host_ip6
  end
  if self.internal then
    error(("net:publish: network %s is internal: nothing on it can be published"):format(self.name), 2)
  end
  local name = container_name("net:publish", c)
  local ip = self.ips[name]
  if not ip then error(("net:publish: %s is not a container of network %s"):format(name, self.name), 2) end
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

  local br, ns = self.name, self.ns
  -- The families to publish on: the host address's, or both on a dual stack network.
  local families = {}
  if host_ip6 then
    families[1] = { family = "ipv6", ip = self.ips6[name], host = host_ip6, len = 128 }
  else
    families[1] = { family = "ipv4", ip = ip, host = host_ip, len = 32 }
    if host_ip == "" and self.base6 then
      families[2] = { family = "ipv6", ip = self.ips6[name], host = "", len = 128 }
    end
  end
  fw.batch(function()
    for _, f in ipairs(families) do
      local o, cip, len = { ns = ns, family = f.family }, f.ip, f.len
      for i = 0, n - 1 do
        local hp, cp = first + i, plo + i
        local to = f.family == "ipv6" and ("[%s]:%d"):format(cip, cp) or ("%s:%d"):format(cip, cp)
        local dst = f.host ~= "" and ("-d %s/%d "):format(f.host, len) or ""
        local m = ("-p %s -m %s"):format(proto, proto)
        fw.append("nat", "DOCKER", ("%s%s --dport %d -j DNAT --to-destination %s"):format(dst, m, hp, to), o)
        local target = ("%s/%s"):format(to, proto)
        if not self.targets[target] then
          -- Once per container port, however many host ports lead to it.
          fw.insert("filter", "DOCKER", ("-d %s/%d ! -i %s -o %s %s --dport %d -j ACCEPT"):format(cip, len, br, br, m, cp), { ns = ns, pos = 1, family = f.family })
          -- A container reaching its own published port (hairpin) sees the gateway.
          fw.append("nat", "POSTROUTING", ("-s %s/%d -d %s/%d %s --dport %d -j MASQUERADE"):format(cip, len, cip, len, m, cp), o)
          self.targets[target] = true
        end
        if f.host:match("^127%.") then
          -- Docker >= 28: a port published on a loopback address is not for other hosts.
          fw.append("raw", "PREROUTING", ("-d %s/32 ! -i lo %s --dport %d -j DROP"):format(f.host, m, hp), o)
        end
        sp.published[("%s/%s/%d"):format(proto, host_ip, hp)] = { by = name, to = ("%s:%d/%s"):format(ip, cp, proto) }
      end
      -- Docker >= 28: packets routed directly to the container from elsewhere than its
      -- bridge are dropped (only the published ports, through the host, reach it),
      -- unless the network is in routed mode.
      if self.gateway_mode == "nat" and not self.direct_drop[cip] then
        fw.append("raw", "PREROUTING", ("-d %s/%d ! -i %s -j DROP"):format(cip, len, br), o)
        self.direct_drop[cip] = true
      end
    end
  end)
  return self, first
end

return M
