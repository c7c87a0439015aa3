-- Every option of netscript.docker, for tests/plan.rs: the plan, run by bash, must
-- build the same rules as a real run (no traffic checks: the model answers those).
local docker = require("netscript.docker")
local net = docker.network{ name = "br_a", subnet = "175.18.0.0/24", gateway = "175.18.0.1" }
local c1 = net:container("pa1")
local c2 = net:container("pa2", { ip = "175.18.0.20", dev = "eth0", host_dev = "veth_pa2" })
net:publish(8088, c1, 80)
net:publish(8088, c1, 80, { proto = "udp" })
net:publish(8089, c2, 80, { host_ip = "127.0.0.1" })
net:publish(0, c2, 81)
net:publish("9000-9002", c1, "80-82")
net:publish("9100-9110", c2, 443)
local quiet = docker.network{ name = "br_b", subnet = "175.19.0.0/24", icc = false, gateway_mode = "routed" }
quiet:publish(8090, quiet:container("pb1"), 80)
local inner = docker.network{ name = "br_c", subnet = "175.20.0.0/24", internal = true }
inner:container("pc1")
fw.insert("filter", "DOCKER-USER", "-i eth9 -j DROP")
local apart = netns.add("apart")
docker.network{ name = "br_d", subnet = "10.30.0.0/24", ns = apart }:container("pd1")
