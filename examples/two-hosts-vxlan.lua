-- Two "hosts" (namespaces) joined by an underlay network, and a layer-2 overlay
-- between them: on each host a bridge with a vxlan port, and a container on the
-- bridge. The containers share one subnet although their hosts are routed apart.
--
--   c1 [192.168.77.11]                                    c2 [192.168.77.12]
--     |                                                     |
--   br0 + vx0 (vni 42) -- h1 [10.0.0.1] == underlay == [10.0.0.2] h2 -- vx0 + br0
--
--   netscript --sandbox examples/two-hosts-vxlan.lua

local h = {}
for i = 1, 2 do
  h[i] = netns.add("h" .. i)
  h[i]:link("lo"):up()
end
local u1, u2 = veth.add("underlay", "underlay", { ns = h[1], peer_ns = h[2] })
u1:addr("10.0.0.1/24"):up()
u2:addr("10.0.0.2/24"):up()

for i = 1, 2 do
  local me, other = ("10.0.0.%d"):format(i), ("10.0.0.%d"):format(3 - i)
  local br = bridge.add("br0", { ns = h[i] }):up()
  link.add("vx0", "vxlan", { id = 42, local_addr = me, remote = other, dev = "underlay", port = 4789, ns = h[i] })
    :master(br):up()

  local c = netns.add("c" .. i)
  c:link("lo"):up()
  local inside, outside = veth.add("eth0", "veth_c" .. i, { ns = c, peer_ns = h[i] })
  outside:master(br):up()
  inside:addr(("192.168.77.%d/24"):format(10 + i)):up()
end

assert(netns.get("c1"):ping("192.168.77.12", { count = 3, timeout = 2 }), "c1 reaches c2 over the overlay")
print("c1 -> c2 over vxlan 42: ok")
print(tostring(link.get("vx0", { ns = "h1" })))
