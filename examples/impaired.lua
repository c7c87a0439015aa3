-- A client and a server over a bad link: shaped to a rate (tbf) and, where the kernel
-- has netem, delayed with jitter and a little loss as well. It measures a download
-- before and after, so the difference shows. Needs python3 and ping.
--
--   client [10.8.0.1] ---- veth ---- [10.8.0.2] server (sends 2 MB to each client)
--
--   netscript --sandbox examples/impaired.lua [RATE] [DELAY]     (default 4mbit 40ms)

local rate, delay = arg[1] or "4mbit", arg[2] or "40ms"

local client, server = netns.add("client"), netns.add("server")
client:link("lo"):up()
server:link("lo"):up()
local c, s = veth.add("eth0", "eth0", { ns = client, peer_ns = server })
c:addr("10.8.0.1/24"):up()
s:addr("10.8.0.2/24"):up()

-- A server that sends 2 MB to each client that connects.
server:spawn({ "python3", "-c", [[
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.8.0.2", 8080)); s.listen(4)
while True:
    c, _ = s.accept()
    try: c.sendall(b"x" * 2000000)
    except OSError: pass
    c.close()
]] })
for _ = 1, 50 do
  if client:tcp("10.8.0.2", 8080) then break end
  netscript.sleep(0.1)
end

local function download()
  local r = client:exec({ "python3", "-c", [[
import socket, time
t = time.time(); s = socket.create_connection(("10.8.0.2", 8080)); n = 0
while True:
    b = s.recv(65536)
    if not b: break
    n += len(b)
print("%d bytes in %.2f s (%.1f Mbit/s)" % (n, time.time() - t, n * 8 / (time.time() - t) / 1e6))
]] }, { check = true, timeout = 60 })
  return (r.stdout:gsub("\n$", ""))
end

local function rtt()
  local r = client:exec({ "ping", "-n", "-q", "-c", "3", "-i", "0.2", "10.8.0.2" })
  return r.stdout:match("= ([%d.]+)/") or "?"
end

print("plain link:   " .. download() .. ", rtt " .. rtt() .. " ms")

-- What the server sends is shaped (and delayed): qdiscs act on a link's way out.
local ok, err = pcall(function() s:impair{ delay = delay, jitter = "5ms", loss = "0.5%", rate = rate } end)
if not ok then
  print("no netem here (" .. (err:match("module sch_netem") or err) .. " is missing): shaping only")
  s:shape{ rate = rate }
end
print("server end:   " .. tostring(s))
print("impaired:     " .. download() .. ", rtt " .. rtt() .. " ms")
