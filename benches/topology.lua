-- The benchmark topology of ../shared/bench/baseline (the same as its shell
-- scripts build): bridge br0 10.200.0.1/16, ip_forward, FORWARD DROP plus
-- `-i br0 -j ACCEPT`, MASQUERADE for 10.200.0.0/16; per container I a namespace
-- pb_cI, veth vh_I (host side, on br0) / eth0 (inside) 10.200.x.y/16, lo and eth0
-- up, default route via the bridge, a FORWARD accept for tcp/80 to it and a DNAT
-- from port 8000+I to it.
--   netscript benches/topology.lua N [hinted]
-- Plain (the default): one call per step, as a person writes it; netscript batches
-- the firewall changes by itself. `hinted`: the same inside fw.batch.
local n = tonumber(arg[1] or "10")
local function build()
  local br = bridge.add("br0")
  br:addr("10.200.0.1/16"):up()
  sysctl.set("net.ipv4.ip_forward", 1)
  fw.policy("filter", "FORWARD", "DROP")
  fw.append("filter", "FORWARD", "-i br0 -j ACCEPT")
  fw.append("nat", "POSTROUTING", "-s 10.200.0.0/16 -j MASQUERADE")
  for i = 1, n do
    local ip = ("10.200.%d.%d"):format(1 + (i - 1) // 250, 1 + (i - 1) % 250)
    local ns = netns.add("pb_c" .. i)
    local eth0, vh = veth.add("eth0", "vh_" .. i, { ns = ns })
    eth0:addr(ip .. "/16")
    ns:link("lo"):up()
    eth0:up()
    route.add("default", { via = "10.200.0.1", ns = ns })
    vh:master(br):up()
    fw.append("filter", "FORWARD", ("-d %s/32 ! -i br0 -o br0 -p tcp -m tcp --dport 80 -j ACCEPT"):format(ip))
    fw.append("nat", "PREROUTING", ("-p tcp -m tcp --dport %d -j DNAT --to-destination %s:80"):format(8000 + i, ip))
  end
end
if arg[2] == "hinted" then
  fw.batch(build)
else
  build()
end
