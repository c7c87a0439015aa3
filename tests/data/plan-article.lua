-- The article's topology (docker's bridge mode by hand), plus a few calls that
-- exercise every kind of change `netscript plan` renders. Used by tests/plan.rs to
-- prove that the plan, run by bash, builds the same kernel state as a real run.
local n = tonumber(arg[1]) or 2
local br = bridge.add("ns_br")
br:addr("175.18.0.1/24"):up()
sysctl.set("net.ipv4.ip_forward", 1)
sysctl.set("net.ipv4.conf.ns_br.route_localnet", 1)

local nss = {}
for i = 1, n do
  local ns = netns.add("ns" .. i)
  local inner, outer = veth.add("veth0", "veth_ns_" .. i)
  inner:move(ns)
  inner:addr("175.18.0." .. (i + 1) .. "/24"):up()
  ns:link("lo"):up()
  outer:master(br):up()
  route.add("default", { via = "175.18.0.1", dev = inner, ns = ns })
  nss[i] = ns
end

-- A veth created directly across namespaces, both ways.
local a = veth.add("x0", "x1", { ns = nss[1], peer_ns = nss[2] })
a:addr("10.9.0.1/30"):mtu(1400):up()
local b = veth.add("h1", "h0", { ns = nss[2] })
b:up()
local h0 = link.get("h0")
h0:addr("10.8.0.1/30"):up()
route.add("10.9.0.0/24", { via = "10.8.0.2", ns = netns.host() })
route.add("10.7.0.0/24", { dev = "h0" })

fw.policy("filter", "FORWARD", "DROP")
fw.append("filter", "FORWARD", "-i ns_br -j ACCEPT")
fw.append("nat", "POSTROUTING", "-s 175.18.0.0/24 ! -o ns_br -j MASQUERADE")
fw.append("nat", "PREROUTING", "-p tcp --dport 8088 -j DNAT --to-destination 175.18.0.2:80")
fw.append("nat", "OUTPUT", "-d 127.0.0.0/8 -p tcp --dport 8088 -j DNAT --to-destination 175.18.0.2:80")
fw.chain("filter", "PORTS")
fw.append("filter", "PORTS", "-p tcp --dport 80 -j ACCEPT")
fw.insert("filter", "FORWARD", "-o ns_br -j PORTS", { pos = 1 })
fw.append("filter", "INPUT", "-p icmp -j ACCEPT", { ns = nss[1] })
fw.append("filter", "INPUT", "-p udp -j DROP")
fw.delete("filter", "INPUT", "-p udp -j DROP")
sysctl.set("net.ipv4.conf.all.rp_filter", 0, { ns = nss[2] })

-- Reads: a plan shows them as comments and answers from its model.
assert(nss[1]:ping("175.18.0.1"), "ns1 reaches the bridge")
print("forwarding:", sysctl.get("net.ipv4.ip_forward"))
print(#fw.rules("nat") > 0)
nss[1]:exec({ "ip", "-br", "addr" }, { check = true })
nss[2]:spawn({ "sleep", "1000" })
print("ns2 port 80 open:", nss[2]:tcp("175.18.0.3", 80, { timeout = 0.2 }))
