-- Two subnets on two bridges inside a "router" namespace, routed between each other.
-- Everything lives in namespaces of its own (the host is not touched at all):
--
--   a1 (10.1.0.2) --- br_a [10.1.0.1]  router  [10.2.0.1] br_b --- b1 (10.2.0.2)
--
--   netscript --sandbox examples/two-bridges.lua

local router = netns.add("router")
router:link("lo"):up()
sysctl.set("net.ipv4.ip_forward", 1, { ns = router })
fw.policy("filter", "FORWARD", "DROP", { ns = router })

for _, side in ipairs({ "a", "b" }) do
  local n = side == "a" and 1 or 2
  local br = bridge.add("br_" .. side, { ns = router })
  br:addr(("10.%d.0.1/24"):format(n)):up()
  local host = netns.add(side .. "1")
  host:link("lo"):up()
  local eth0, port = veth.add("eth0", "p_" .. side .. "1", { ns = host, peer_ns = router })
  eth0:addr(("10.%d.0.2/24"):format(n)):mtu(1400):up()
  port:master(br):up()
  route.add("default", { via = ("10.%d.0.1"):format(n), ns = host })
  -- Only traffic between the two subnets is forwarded.
  fw.append("filter", "FORWARD", ("-i br_%s -d 10.0.0.0/8 -j ACCEPT"):format(side), { ns = router })
end

local a1, b1 = netns.get("a1"), netns.get("b1")
assert(a1:ping("10.2.0.2"), "a1 reaches b1 through the router")
assert(b1:ping("10.1.0.2"), "b1 reaches a1 through the router")
print("a1 (10.1.0.2) and b1 (10.2.0.2) reach each other through the router")
