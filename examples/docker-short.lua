-- The article's end state in a few lines, with the netscript.docker module.
--   netscript --sandbox examples/docker-short.lua
local docker, lan = require("netscript.docker"), require("lan")
local laptop = lan.uplink()                      -- enp0s5 10.211.55.32 <-> the laptop 10.6.213.149
local net = docker.network{ name = "ns_br", subnet = "175.18.0.0/24" }
local c1, c2 = net:container("ns1"), net:container("ns2")      -- 175.18.0.2, 175.18.0.3
lan.serve(c1, 80)
lan.serve(c2, 80)
net:publish(8088, c1, 80):publish(8089, c2, 80)
assert(laptop:tcp(lan.host_ip, 8088) and laptop:tcp(lan.host_ip, 8089), "the laptop reaches both ports")
assert(netns.host():tcp("127.0.0.1", 8088), "the host reaches 127.0.0.1:8088")
assert(c1:ping("175.18.0.3") and c1:ping(lan.laptop_ip), "ns1 reaches ns2 and the laptop")
print("docker bridge network up: 8088 -> ns1:80, 8089 -> ns2:80")
