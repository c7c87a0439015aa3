-- The article, steps 1 to 3: two "containers" (network namespaces) on a bridge,
-- with a default route through it and IP forwarding on.
--
--   netscript --sandbox examples/article-part1.lua     (nothing touches your host)
--   sudo netscript examples/article-part1.lua           (for real; then: netscript down article-part1)

-- Step 2's bridge, with the gateway address the containers route through.
-- (The article also runs `route add -net 175.18.0.0/24 dev ns_br`: the kernel adds
-- that route by itself when the address goes on.)
local br = bridge.add("ns_br")
br:addr("175.18.0.1/24"):up()

-- Step 1: a namespace per container, a veth pair between it and the host.
for i = 1, 2 do
  local ns = netns.add("ns" .. i)
  ns:link("lo"):up()
  -- The article creates the pair in the host, then `ip link set veth0 netns nsI`;
  -- creating veth0 directly inside the namespace is the same, without the move.
  local veth0, host_end = veth.add("veth0", "veth_ns_" .. i, { ns = ns })
  veth0:addr(("175.18.0.%d/24"):format(i + 1)):up()
  host_end:master(br):up()
  route.add("default", { via = "175.18.0.1", ns = ns })
end

-- Step 3: the host forwards between its interfaces.
sysctl.set("net.ipv4.ip_forward", 1)

-- The article's checks.
local ns1, ns2 = netns.get("ns1"), netns.get("ns2")
assert(ns1:ping("175.18.0.1"), "ns1 cannot reach the bridge")
assert(ns2:ping("175.18.0.1"), "ns2 cannot reach the bridge")
assert(netns.host():ping("175.18.0.2") and netns.host():ping("175.18.0.3"), "the host cannot reach ns1 / ns2")
assert(ns1:ping("175.18.0.3"), "ns1 cannot reach ns2")
print("ns1 (175.18.0.2) and ns2 (175.18.0.3) reach the bridge, the host and each other")
