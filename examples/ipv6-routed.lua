-- IPv6 next to IPv4: the article's two containers on a bridge, dual stack, and a
-- routed IPv6 network (2001:db8::/32) behind a router namespace "remote".
--
--   netscript --sandbox examples/ipv6-routed.lua     (nothing touches your host)
--   sudo netscript examples/ipv6-routed.lua           (for real; then: netscript down ipv6-routed)
--
-- IPv6 addresses netscript adds skip duplicate address detection (nodad), so they
-- work at once; `Link:addr(cidr, { nodad = false })` lets the kernel check them
-- first, and ping / tcp wait until they are usable.

-- The bridge, with a gateway address of each family.
local br = bridge.add("br6")
br:addr("175.30.0.1/24"):addr("fd00:30::1/64"):up()

for i = 1, 2 do
  local ns = netns.add("c" .. i)
  ns:link("lo"):up()
  local eth0, host_end = veth.add("eth0", "veth_c" .. i, { ns = ns })
  eth0:addr(("175.30.0.%d/24"):format(i + 1)):addr(("fd00:30::%d/64"):format(i + 1)):up()
  host_end:master(br):up()
  route.add("default", { via = "175.30.0.1", ns = ns })
  route.add("default", { via = "fd00:30::1", ns = ns })
end

-- The remote site: 2001:db8::1 on its lo, reached through a point-to-point link.
local remote = netns.add("remote")
local lo = remote:link("lo"):up()
lo:addr("2001:db8::1/128")
local r_eth0, uplink = veth.add("eth0", "to_remote", { ns = remote })
r_eth0:addr("fd00:31::2/64"):up()
uplink:addr("fd00:31::1/64"):up()
route.add("2001:db8::/32", { via = "fd00:31::2" })
route.add("fd00:30::/64", { via = "fd00:31::1", ns = remote })

-- The host routes between the containers and the remote site.
local c1, c2 = netns.get("c1"), netns.get("c2")
assert(c1:ping("fd00:30::3"), "c1 cannot reach c2 over IPv6 (same bridge)")
assert(not c1:ping("2001:db8::1", { timeout = 0.5 }), "the host forwards IPv6 before forwarding is on")
sysctl.set("net.ipv6.conf.all.forwarding", 1)
sysctl.set("net.ipv4.ip_forward", 1)

-- The checks: both families across the bridge, IPv6 across the router.
assert(c1:ping("175.30.0.3"), "c1 cannot reach c2 over IPv4")
assert(c1:ping("2001:db8::1"), "c1 cannot reach the remote site over IPv6")
assert(c2:ping("fd00:31::2"), "c2 cannot reach the router over IPv6")

-- A TCP server on the remote site, listening on IPv6.
remote:spawn({ "python3", "-c", [[
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 8080))
s.listen()
while True:
    c, _ = s.accept()
    c.close()
]] })
local up = false
for _ = 1, 100 do
  up = remote:tcp("::1", 8080, { timeout = 0.2 })
  if up then break end
  netscript.sleep(0.05)
end
assert(up, "the server on the remote site did not start")
assert(c1:tcp("2001:db8::1", 8080), "c1 cannot connect to [2001:db8::1]:8080")
print("c1 and c2 reach each other over IPv4 and IPv6, and [2001:db8::1]:8080 through the host")
