-- The article's Docker bridge network, dual stack: two containers on a bridge with an
-- IPv4 and an IPv6 address each, outbound NAT for both families, and a published port
-- reached over IPv4 and over IPv6 from an outside namespace ("laptop").
--
--   netscript --sandbox examples/dual-stack.lua      (nothing touches your host)
--   sudo netscript examples/dual-stack.lua            (for real; then: netscript down dual-stack)
--
-- Published ports work from the host on its own addresses (127.0.0.1 too), but not
-- on [::1]: IPv6 has no route_localnet, a packet from ::1 never leaves the loopback
-- (Docker uses its userland proxy there). From the host, use its IPv6 address on the
-- bridge (net.gateway6) or on the uplink.
local docker = require("netscript.docker")

-- The outside world: the host's uplink, a veth pair to the "laptop", both families.
-- The laptop has no route to the container subnets: replies to the containers only
-- find their way back because outbound traffic is masqueraded.
local laptop = netns.add("laptop")
laptop:link("lo"):up()
local uplink, eth0 = veth.add("enp0s5", "eth0", { peer_ns = laptop })
uplink:addr("10.211.55.32/24"):addr("2001:db8:55::32/64"):up()
eth0:addr("10.211.55.2/24"):addr("2001:db8:55::2/64"):up()

local net = docker.network{ name = "ns_br", subnet = "175.18.0.0/24", subnet6 = "fd00:dead:beef::/64" }
local c1, c2 = net:container("ns1"), net:container("ns2")   -- .2 / ::2 and .3 / ::3

-- A server in each container, on both families, that answers with its name and the
-- address it sees the client at.
local function serve(ns, port)
  ns:spawn({ "python3", "-c", [[
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
s.listen()
while True:
    c, peer = s.accept()
    c.sendall(("%s %s\n" % (sys.argv[2], peer[0])).encode())
    c.close()
]], tostring(port), ns.name })
  for _ = 1, 100 do
    if ns:tcp("::1", port, { timeout = 0.2 }) then return end
    netscript.sleep(0.05)
  end
  error(("the server in %s did not start listening on port %d"):format(ns.name, port))
end
serve(c1, 80)
serve(c2, 80)
net:publish(8088, c1, 80):publish(8089, c2, 80)

-- What a client in `ns` reads from addr:port ("" in a plan, whose exec runs nothing).
local function fetch(ns, addr, port)
  local r = ns:exec({ "python3", "-c", [[
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)
print(c.recv(200).decode().strip())
]], addr, tostring(port) })
  assert(r.code == 0, ("%s cannot fetch [%s]:%d: %s"):format(ns.name, addr, port, r.stderr))
  return (r.stdout:gsub("%s+$", ""))
end

-- Who answered and whom it saw, when there is an answer to read.
local function says(got, want, what)
  assert(got == "" or got == want, ("%s: %q, not %q"):format(what, got, want))
end

-- The checks. The published ports, from the laptop, over both families.
assert(laptop:tcp("10.211.55.32", 8088) and laptop:tcp("2001:db8:55::32", 8088), "the laptop reaches 8088")
assert(laptop:tcp("2001:db8:55::32", 8089), "the laptop reaches 8089 over IPv6")
says(fetch(laptop, "10.211.55.32", 8088), "ns1 ::ffff:10.211.55.2", "8088 over IPv4")
says(fetch(laptop, "2001:db8:55::32", 8089), "ns2 2001:db8:55::2", "8089 over IPv6")
-- From the host: 127.0.0.1 and its IPv6 address on the bridge.
assert(netns.host():tcp("127.0.0.1", 8088), "the host reaches 127.0.0.1:8088")
assert(netns.host():tcp(net.gateway6, 8089), "the host reaches [" .. net.gateway6 .. "]:8089")
-- Between the containers, both families.
assert(c1:ping(net:ip(c2)) and c1:ping(net:ip6(c2)), "ns1 reaches ns2 over IPv4 and IPv6")
-- Outbound, masqueraded (the laptop has no route back to the containers).
assert(c1:ping("10.211.55.2") and c1:ping("2001:db8:55::2"), "ns1 reaches the laptop over IPv4 and IPv6")
print(("dual stack docker network up: 8088 -> ns1:80, 8089 -> ns2:80 (%s, %s)"):format(net.subnet, net.subnet6))
