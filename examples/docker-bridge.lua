-- Docker's bridge network mode, built by hand: the article, step by step, with its
-- own names and addresses. Each step prints what it checked.
--
--   netscript --sandbox examples/docker-bridge.lua        all steps, in a throwaway sandbox
--   netscript --sandbox examples/docker-bridge.lua 5      only steps 1 to 5
--
-- "The outside world" (the uplink enp0s5 and the laptop 10.6.213.149) is simulated by
-- examples/lan.lua, so this runs anywhere.

local lan = require("lan")
local last = tonumber(arg[1] or "") or math.huge
local host = netns.host()

local function step(n, title, build)
  if n > last then return end
  print(("step %d: %s"):format(n, title))
  build()
end
local function check(ok, what)
  if not ok then error("check failed: " .. what, 2) end
  print("  ok: " .. what)
end

local laptop = lan.uplink()
local ns1, ns2

step(1, "namespaces and veth pairs", function()
  for i = 1, 2 do
    local ns = netns.add("ns" .. i)
    -- As the article: create the pair in the host, then move veth0 into the namespace.
    local veth0, host_end = veth.add("veth0", "veth_ns_" .. i)
    veth0:move(ns)
    veth0:addr(("175.18.0.%d/24"):format(i + 1)):up()
    ns:link("lo"):up()
    host_end:up()
  end
  ns1, ns2 = netns.get("ns1"), netns.get("ns2")
end)

step(2, "a bridge, the containers on it, default routes through it", function()
  local br = bridge.add("ns_br")
  br:addr("175.18.0.1/24"):up()
  -- (`route add -net 175.18.0.0/24 dev ns_br` is already there: the kernel added it
  -- with the address.)
  link.get("veth_ns_1"):master(br)
  link.get("veth_ns_2"):master(br)
  route.add("default", { via = "175.18.0.1", dev = "veth0", ns = ns1 })
  route.add("default", { via = "175.18.0.1", dev = "veth0", ns = ns2 })
  check(ns1:ping("175.18.0.1") and ns2:ping("175.18.0.1"), "ns1 and ns2 reach the bridge 175.18.0.1")
  check(host:ping("175.18.0.2") and host:ping("175.18.0.3"), "the host reaches 175.18.0.2 and 175.18.0.3")
end)

step(3, "forwarding on; with FORWARD policy DROP, ns1 cannot reach ns2", function()
  sysctl.set("net.ipv4.ip_forward", 1)
  fw.policy("filter", "FORWARD", "DROP")
  check(not ns1:ping("175.18.0.3"), "ns1 cannot reach ns2 (bridged traffic passes iptables)")
end)

step(4, "FORWARD policy ACCEPT", function()
  fw.policy("filter", "FORWARD", "ACCEPT")
  check(ns1:ping("175.18.0.3") and ns2:ping("175.18.0.2"), "ns1 and ns2 reach each other")
  check(not ns1:ping(lan.laptop_ip), "no reply from the laptop: it has no route back to 175.18.0.0/24")
end)

step(5, "outbound NAT", function()
  fw.append("nat", "POSTROUTING", "-s 175.18.0.0/24 -j MASQUERADE")
  check(ns1:ping(lan.laptop_ip), "ns1 gets a reply from the laptop")
end)

step(6, "services: an http server in ns1 and in ns2", function()
  lan.serve(ns1, 80)
  lan.serve(ns2, 80)
  check(host:tcp("175.18.0.2", 80) and host:tcp("175.18.0.3", 80), "the host reaches both servers on port 80")
end)

step(7, "port mapping: 8088 -> ns1:80, 8089 -> ns2:80", function()
  fw.append("nat", "PREROUTING", "-p tcp --dport 8088 -j DNAT --to 175.18.0.2:80")
  fw.append("nat", "PREROUTING", "-p tcp --dport 8089 -j DNAT --to 175.18.0.3:80")
  check(laptop:tcp(lan.host_ip, 8088) and laptop:tcp(lan.host_ip, 8089), "the laptop reaches 10.211.55.32:8088 and :8089")
end)

step(8, "a stricter filter: policy DROP, only the bridge's own traffic and published ports", function()
  fw.policy("filter", "FORWARD", "DROP")
  fw.append("filter", "FORWARD", "-i ns_br -j ACCEPT")
  fw.append("filter", "FORWARD", "-d 175.18.0.2/32 ! -i ns_br -o ns_br -p tcp -m tcp --dport 80 -j ACCEPT")
  fw.append("filter", "FORWARD", "-d 175.18.0.3/32 ! -i ns_br -o ns_br -p tcp -m tcp --dport 80 -j ACCEPT")
  check(laptop:tcp(lan.host_ip, 8088) and laptop:tcp(lan.host_ip, 8089), "the laptop still reaches both ports")
end)

step(9, "host-local access: OUTPUT DNAT for the host's own addresses", function()
  fw.append("nat", "OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -p tcp --dport 8088 -j DNAT --to-destination 175.18.0.2:80")
  fw.append("nat", "OUTPUT", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -p tcp --dport 8089 -j DNAT --to-destination 175.18.0.3:80")
  check(host:tcp(lan.host_ip, 8088), "the host reaches 10.211.55.32:8088")
end)

step(10, "127.0.0.1:8088, the case the article left open", function()
  -- Locally generated packets to 127.0.0.0/8 may only leave lo with route_localnet;
  -- the reply needs a source the container can answer: MASQUERADE (as CNI's portmap).
  fw.append("nat", "OUTPUT", "-d 127.0.0.0/8 -p tcp --dport 8088 -j DNAT --to-destination 175.18.0.2:80")
  fw.append("nat", "OUTPUT", "-d 127.0.0.0/8 -p tcp --dport 8089 -j DNAT --to-destination 175.18.0.3:80")
  sysctl.set("net.ipv4.conf.ns_br.route_localnet", 1)
  fw.append("nat", "POSTROUTING", "-s 127.0.0.0/8 -o ns_br -j MASQUERADE")
  check(host:tcp("127.0.0.1", 8088) and host:tcp("127.0.0.1", 8089), "the host reaches 127.0.0.1:8088 and :8089")
end)
