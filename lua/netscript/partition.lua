-- netscript.partition: cut IPv4 and IPv6 traffic between groups of namespaces, for
-- testing how distributed software behaves when the network splits.
--
--   local p = netscript.partition({a, b}, {c})   -- a and b talk; neither talks to c
--   netscript.partition({a}, {"host"})           -- the host: "host" or netns.host()
--   ...
--   p:heal()                                     -- as before
--
-- By firewall: in every namespace of a group, the filter table gets rules that drop
-- packets from (INPUT) and to (OUTPUT) the addresses the other groups' links have
-- when the partition is made (IPv4 by iptables, IPv6, link-local ones included, by
-- ip6tables), inserted first so they win over ACCEPT rules.
-- Links stay up, so each side still sees its own links and routes as before; only
-- the traffic between the groups goes. The rules are journaled like any fw change
-- (rollback removes them too); heal() deletes them.

local M = {}

-- A namespace's name in messages and tostring: "host" for the host, as pingall says.
local function ns_name(ns)
  if type(ns) == "string" then return ns end
  return ns.name or "host"
end

-- Whether `v` is a Netns handle (the host's included).
local function is_netns(v)
  if type(v) ~= "userdata" then return false end
  local s = tostring(v)
  return s == "netns.host()" or s:sub(1, 6) == "Netns("
end

-- The addresses of a namespace's links (not lo), as {ip = ..., family = ...}.
local function addresses(ns)
  local out = {}
  for _, l in ipairs(ns:links()) do
    if l.name ~= "lo" then
      for _, cidr in ipairs(l:addrs()) do
        local ip = cidr:match("^(.*)/%d+$") or cidr
        out[#out + 1] = { ip = ip, family = ip:find(":", 1, true) and "ipv6" or "ipv4" }
      end
    end
  end
  return out
end

local Partition = {}
Partition.__index = Partition
Partition.__tostring = function(p)
  local groups = {}
  for _, g in ipairs(p.groups) do
    local names = {}
    for _, ns in ipairs(g) do names[#names + 1] = ns_name(ns) end
    groups[#groups + 1] = "{" .. table.concat(names, ", ") .. "}"
  end
  return ("Partition(%s%s)"):format(table.concat(groups, " | "), p.healed and ", healed" or "")
end

function Partition:heal()
  if self.healed then return self end
  for i = #self.rules, 1, -1 do
    local r = self.rules[i]
    fw.delete("filter", r.chain, r.rule, { ns = r.ns, family = r.family })
  end
  self.healed = true
  return self
end

function M.partition(...)
  local groups = { ... }
  if #groups < 2 then
    error("netscript.partition: give at least two groups of namespaces, like ({a, b}, {c})", 2)
  end
  local seen = {}
  for gi, g in ipairs(groups) do
    if type(g) ~= "table" or getmetatable(g) ~= nil or #g == 0 then
      error(("netscript.partition: group %d must be a list of namespaces, like {a, b}"):format(gi), 2)
    end
    for i, ns in ipairs(g) do
      -- "host" is the host namespace, as in netscript.pingall (no namespace can have
      -- that name: netns.add refuses it).
      if type(ns) == "string" then g[i] = ns == "host" and netns.host() or netns.get(ns); ns = g[i] end
      if not is_netns(ns) then
        error(("netscript.partition: group %d: %s is not a namespace (a Netns or a name)"):format(gi,
          (type(ns) == "number" or type(ns) == "userdata") and tostring(ns) or type(ns)), 2)
      end
      local n = ns_name(ns)
      if seen[n] == gi then
        error(("netscript.partition: namespace %q is twice in group %d"):format(n, gi), 2)
      elseif seen[n] then
        error(("netscript.partition: namespace %q is in two groups"):format(n), 2)
      end
      seen[n] = gi
    end
  end
  local addrs = {}
  for gi, g in ipairs(groups) do
    addrs[gi] = {}
    for _, ns in ipairs(g) do
      for _, ip in ipairs(addresses(ns)) do addrs[gi][#addrs[gi] + 1] = ip end
    end
  end
  local p = setmetatable({ groups = groups, rules = {}, healed = false }, Partition)
  fw.batch(function()
    for gi, g in ipairs(groups) do
      for _, ns in ipairs(g) do
        for oi = 1, #groups do
          if oi ~= gi then
            for _, a in ipairs(addrs[oi]) do
              for _, r in ipairs({ { chain = "INPUT", rule = "-s " .. a.ip .. " -j DROP" },
                                   { chain = "OUTPUT", rule = "-d " .. a.ip .. " -j DROP" } }) do
                fw.insert("filter", r.chain, r.rule, { ns = ns, family = a.family })
                p.rules[#p.rules + 1] = { ns = ns, chain = r.chain, rule = r.rule, family = a.family }
              end
            end
          end
        end
      end
    end
  end)
  return p
end

return M
