//! Test harness: throwaway sandboxes (network + mount namespaces with a private
//! /run), the netscript binary run inside them, and kernel-state snapshots taken with
//! the system's own tools. Nothing here touches the host's network.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_netscript");

/// Sysctls every snapshot reads, in every namespace.
pub const SYSCTLS: &[&str] = &[
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv6.conf.all.forwarding",
];

/// Per-link sysctls every snapshot reads (paths below /proc/sys/net; `all`,
/// `default` and each link), in every namespace: the ones that writing `all` (or
/// ip_forward) copies to every link.
pub const PER_LINK: &str =
    "ipv4/conf/*/forwarding ipv6/conf/*/forwarding ipv6/conf/*/disable_ipv6 ipv6/conf/*/accept_ra";

/// A sandbox kept alive by a `sleep` process; commands enter it with nsenter.
pub struct Sandbox {
    child: Child,
    pub pid: u32,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let mut child = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run && mkdir -p /run/netns && mount -t sysfs sysfs /sys && ip link set lo up && echo ready && exec sleep 100000")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut buf = [0u8; 6];
        use std::io::Read;
        child.stdout.as_mut().unwrap().read_exact(&mut buf).expect("sandbox starts (tests need root)");
        assert_eq!(&buf, b"ready\n");
        let pid = child.id();
        Sandbox { child, pid }
    }

    fn enter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid.to_string(), "-n", "-m", "--"]);
        // SIGHUP as a terminal session has it, whatever the test runner inherited: a
        // runner started under `nohup` passes SIGHUP on ignored, and netscript then
        // (rightly) does not stop on it.
        // SAFETY: between fork and exec only async-signal-safe calls: signal(2).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
        c
    }

    /// Runs a shell script inside the sandbox.
    pub fn sh(&self, script: &str) -> Output {
        self.enter().args(["sh", "-c", script]).output().unwrap()
    }

    /// Runs a shell script inside the sandbox; panics with its output if it fails.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "`{script}` failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs netscript inside the sandbox (not --sandbox: the test owns the sandbox).
    pub fn netscript(&self, args: &[&str]) -> Output {
        self.enter().arg(BIN).args(args).output().unwrap()
    }

    /// Starts netscript inside the sandbox without waiting for it.
    pub fn spawn_netscript(&self, args: &[&str], envs: &[(&str, &str)]) -> Child {
        let mut c = self.enter();
        c.arg(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in envs {
            c.env(k, v);
        }
        c.spawn().unwrap()
    }

    /// Starts netscript on `script` and waits (20 s at most) until the script has
    /// made the file `ready` (a path in the sandbox): it is then running its own
    /// code. The child's pid is netscript's (nsenter execs it), for `signal`.
    pub fn spawn_until_ready(&self, script: &str, ready: &str) -> Child {
        let _ = self.sh(&format!("rm -f {ready}"));
        let child = self.spawn_netscript(&[script], &[]);
        wait_for(20, "the script to get going", || self.sh(&format!("test -e {ready}")).status.success());
        child
    }

    /// Starts netscript with a pipe to its standard input (a REPL fed line by line;
    /// dropping the pipe ends its input).
    pub fn spawn_netscript_fed(&self, args: &[&str]) -> Child {
        let mut c = self.enter();
        c.arg(BIN).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.spawn().unwrap()
    }

    /// Writes a script file (in the host's /tmp, visible in the sandbox) and runs it.
    pub fn run_lua(&self, name: &str, src: &str) -> Output {
        let path = script_file(name, src);
        self.netscript(&[path.as_str()])
    }

    /// Runs netscript and checks its exit code; on a mismatch, panics with `what`,
    /// the command and its whole output.
    pub fn netscript_expect(&self, args: &[&str], code: i32, what: &str) -> Output {
        let o = self.netscript(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{what}: `netscript {}` should exit {code}\n--- stdout:\n{}--- stderr:\n{}",
            args.join(" "),
            stdout(&o),
            stderr(&o)
        );
        o
    }

    /// Runs netscript (a script and its options, or a command); it must succeed.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        self.netscript_expect(args, 0, "run")
    }

    /// Writes a script file and runs it; it must exit with `code`.
    pub fn run_lua_expect(&self, name: &str, src: &str, code: i32) -> Output {
        let path = script_file(name, src);
        self.netscript_expect(&[path.as_str()], code, name)
    }

    /// `netscript down NAME`; it must succeed.
    pub fn down(&self, name: &str) -> Output {
        self.netscript_expect(&["down", name], 0, &format!("down {name}"))
    }

    /// Asserts the kernel state equals `before` (a `snapshot()`), showing the lines
    /// that differ under `what`.
    pub fn assert_unchanged(&self, before: &str, what: &str) {
        assert_same(before, &self.snapshot(), what);
    }

    /// The kernel state, as the system's own tools print it: links, addresses and
    /// routes in every namespace, the namespace list, the root and other qdiscs, the
    /// firewall rule sets (iptables and ip6tables, nft and legacy) and the sysctls of SYSCTLS. One shell run inside the sandbox reads it all; fields that
    /// change on their own are dropped (`normalize_json`, `normalize_rules`).
    pub fn snapshot(&self) -> String {
        const SEP: &str = "::netscript-snapshot::";
        let names = self.ok("ip netns list | awk '{print $1}' | sort");
        let mut nss: Vec<Option<&str>> = vec![None];
        nss.extend(names.lines().filter(|l| !l.is_empty()).map(Some));
        // One section per reading, each headed by SEP and its label; an `ip` that
        // fails says so (the snapshot must not quietly miss a namespace).
        let mut script = String::new();
        let mut labels = Vec::new();
        for (i, ns) in nss.iter().enumerate() {
            let (ip, ex) = match ns {
                None => ("ip".to_string(), String::new()),
                Some(n) => (format!("ip -n {n}"), format!("ip netns exec {n} ")),
            };
            for what in IP_READS {
                labels.push((i, what.to_string()));
                script += &format!("echo '{SEP}'; {ip} -j {what} || echo '{SEP}failed'\n");
            }
            labels.push((i, "qdiscs".to_string()));
            let tc = ns.map(|n| format!("tc -n {n}")).unwrap_or_else(|| "tc".into());
            script += &format!("echo '{SEP}'; {tc} -j qdisc show || echo '{SEP}failed'\n");
            for save in ["iptables-nft-save", "iptables-legacy-save", "ip6tables-nft-save", "ip6tables-legacy-save"] {
                labels.push((i, save.to_string()));
                script += &format!("echo '{SEP}'; {ex}{save} 2>/dev/null\n");
            }
            for k in SYSCTLS {
                labels.push((i, k.to_string()));
                script += &format!("echo '{SEP}'; {ex}sysctl -n {k} 2>/dev/null\n");
            }
            labels.push((i, "conf".to_string()));
            script += &format!("echo '{SEP}'; {ex}sh -c 'cd /proc/sys/net && grep -H . {PER_LINK}' 2>/dev/null\n");
        }
        script += "true\n";
        let raw = self.ok(&script);
        let sections: Vec<&str> = raw.split(&format!("{SEP}\n")).skip(1).collect();
        assert_eq!(sections.len(), labels.len(), "snapshot: unexpected output:\n{raw}");
        let mut out = format!("namespaces: {:?}\n", names.lines().collect::<Vec<_>>());
        let mut last = usize::MAX;
        for ((i, label), text) in labels.iter().zip(sections) {
            if *i != last {
                out += &format!("== {}\n", nss[*i].unwrap_or("host"));
                last = *i;
            }
            if IP_READS.contains(&label.as_str()) {
                assert!(!text.contains(SEP), "snapshot: `ip -j {label}` failed in {}", nss[*i].unwrap_or("host"));
                let mut json = normalize_json(text);
                if label.contains("route") {
                    json = routes_sorted(&json);
                }
                out += &format!("{label}: {json}\n");
            } else if label == "qdiscs" {
                assert!(!text.contains(SEP), "snapshot: `tc -j qdisc show` failed in {}", nss[*i].unwrap_or("host"));
                out += &format!("qdiscs: {}\n", normalize_qdiscs(text));
            } else if label == "conf" {
                out += &format!("per-link sysctls:\n{text}");
            } else if label.contains("-save") {
                out += &format!("{label}:\n{}", normalize_rules(text));
            } else {
                out += &format!("{label} = {}\n", text.trim());
            }
        }
        out
    }
}

/// The `ip -j` reads of a snapshot, per namespace.
const IP_READS: [&str; 4] = ["-d link show", "addr show", "route show table all", "-6 route show table all"];

impl Sandbox {
    /// The processes started inside this sandbox (they share its mount namespace,
    /// whatever their network namespace), other than the keeper, whose command line
    /// contains `pattern`.
    pub fn processes(&self, pattern: &str) -> Vec<i32> {
        let Ok(mnt) = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid)) else { return Vec::new() };
        let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
        rd.flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
                let inside = pid as u32 != self.pid && std::fs::read_link(e.path().join("ns/mnt")).ok()? == mnt;
                let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                (inside && cmd.contains(pattern)).then_some(pid)
            })
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Kill everything started inside, wherever its network namespace is (a
        // deleted one included), then the keeper. The namespaces and mounts go with them.
        for pid in self.processes("") {
            let _ = nix_kill(pid);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIG`sig` ("INT", "TERM", "KILL") to process `pid`; whether it was sent.
pub fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().is_ok_and(|s| s.success())
}

fn nix_kill(pid: i32) -> std::io::Result<()> {
    Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status().map(|_| ())
}

/// `ip -j` output without the fields that change on their own: bridge timers, and
/// the qdisc, which the kernel attaches the first time a link goes up (noop ->
/// noqueue) and which no `ip link` command takes back.
///
/// The kernel's own IPv6 link-local addresses go through duplicate address detection
/// for a second or two after a link comes up: their "tentative" flag, and the local
/// host route that appears once it is over, are timing, not state (the addresses
/// netscript adds skip detection: nodad).
pub fn normalize_json(s: &str) -> String {
    fn link_local(v: &serde_json::Value, key: &str) -> bool {
        v.get(key).and_then(serde_json::Value::as_str).is_some_and(|a| a.starts_with("fe80:") && !a.contains('/'))
    }
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| !k.ends_with("_timer") && k != "qdisc");
                if m.get("local").and_then(serde_json::Value::as_str).is_some_and(|a| a.starts_with("fe80:")) {
                    m.remove("tentative");
                }
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => {
                a.retain(|r| {
                    !(link_local(r, "dst") && r.get("table").and_then(serde_json::Value::as_str) == Some("local"))
                });
                a.iter_mut().for_each(strip)
            }
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(mut v) => {
            strip(&mut v);
            v.to_string()
        }
        Err(_) => s.trim().to_string(),
    }
}

/// `tc -j qdisc show` without what the kernel does on its own: the default qdisc a
/// link gets when first brought up (`noqueue`, handle 0:), reference counts, and
/// the handle numbers it allocates (a qdisc made again gets a new one).
pub fn normalize_qdiscs(s: &str) -> String {
    let Ok(serde_json::Value::Array(v)) = serde_json::from_str::<serde_json::Value>(s) else {
        return s.trim().to_string();
    };
    let kept: Vec<serde_json::Value> = v
        .into_iter()
        .filter(|q| !(q["kind"] == "noqueue" && q["handle"] == "0:"))
        .map(|mut q| {
            if let Some(m) = q.as_object_mut() {
                m.remove("refcnt");
                let default = m.get("handle").and_then(|h| h.as_str()) == Some("0:");
                m.insert("handle".into(), if default { "0:" } else { "allocated" }.into());
            }
            q
        })
        .collect();
    serde_json::Value::Array(kept).to_string()
}

/// The rule set of `iptables-save`, compared as rules, not tables: counters and
/// comments-lines dropped, empty tables and ACCEPT policies of built-in chains left
/// out (an nf_tables table stays, empty, once used).
pub fn normalize_rules(save: &str) -> String {
    let mut out = String::new();
    let mut table = String::new();
    for l in save.lines() {
        if l.starts_with('#') || l == "COMMIT" {
            continue;
        }
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
            continue;
        }
        if let Some(rest) = l.strip_prefix(':') {
            let mut w = rest.split_whitespace();
            let (chain, policy) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
            if policy == "ACCEPT" {
                continue;
            }
            out += &format!("{table}: chain {chain} {policy}\n");
            continue;
        }
        out += &format!("{table}: {l}\n");
    }
    out
}

/// Removes the temporary directories earlier test processes left under /tmp
/// (`netscript-*-PID` whose process is gone). Once per test process.
fn sweep_stale_temp_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("netscript-") else { continue };
            let Some(pid) = rest.split('-').find_map(|w| w.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    });
}

/// Starts netscript (outside any sandbox of the test's: `args` name `--sandbox`) with
/// its standard input, output and error on pipes and `envs` set; `fed` gives it its
/// input and waits.
pub fn spawn_piped(args: &[&str], envs: &[(&str, &std::path::Path)]) -> Child {
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Writes `input` to a child of `spawn_piped`, closes its input and waits for it.
pub fn fed(mut c: Child, input: &[u8]) -> Output {
    c.stdin.take().unwrap().write_all(input).unwrap();
    c.wait_with_output().unwrap()
}

/// A script file under /tmp (readable by everyone, for the rootless tests too).
pub fn script_file(name: &str, src: &str) -> String {
    sweep_stale_temp_dirs();
    let dir = std::env::temp_dir().join(format!("netscript-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(src.as_bytes()).unwrap();
    let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    path.display().to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts two snapshots are equal, showing the lines that differ.
pub fn assert_same(before: &str, after: &str, what: &str) {
    if before != after {
        let b: Vec<&str> = before.lines().collect();
        let a: Vec<&str> = after.lines().collect();
        let mut diff = String::new();
        for l in &b {
            if !a.contains(l) {
                diff += &format!("- {l}\n");
            }
        }
        for l in &a {
            if !b.contains(l) {
                diff += &format!("+ {l}\n");
            }
        }
        panic!("{what}: kernel state differs from before:\n{diff}");
    }
}

/// Waits until `f` is true (or panics after `secs`).
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A copy of the binary that any user can run (the build directory may sit below a
/// directory only root can enter), for the rootless tests.
pub fn public_bin() -> String {
    sweep_stale_temp_dirs();
    let dir = std::env::temp_dir().join(format!("netscript-bin-{}", std::process::id()));
    let dst = dir.join("netscript");
    if !dst.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let tmp = dir.join(format!("netscript.{:?}", std::thread::current().id()).replace(['(', ')'], ""));
        std::fs::copy(BIN, &tmp).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let _ = std::fs::rename(&tmp, &dst);
    }
    dst.display().to_string()
}

/// Runs the binary as user `nobody` (no privileges at all).
pub fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(public_bin())
        .args(args)
        .output()
        .unwrap()
}

// ---- comparing the builds of two sandboxes ---------------------------------------

/// Whether a `portable` snapshot keeps the ownership marks (link alias, route
/// protocol, rule comments): two netscript runs of one topology carry the same
/// marks; a plan run by bash carries none.
#[derive(Clone, Copy, PartialEq)]
pub enum Marks {
    Keep,
    Drop,
}

/// A `snapshot()` without what differs between two sandboxes that built the same
/// thing: MAC addresses and what derives from them (bridge ids, IPv6 link-local
/// addresses and their host routes), interface indexes (a link made and deleted
/// again moves the counter on), DAD state, and with `Marks::Drop` the ownership marks.
/// Routes compare as sets.
pub fn portable(snap: &str, marks: Marks) -> String {
    let mut out = String::new();
    for l in snap.lines() {
        let json = IP_READS.iter().find_map(|p| l.strip_prefix(&format!("{p}: ")).map(|j| (*p, j)));
        let line = match json {
            Some((p, j)) => match serde_json::from_str::<serde_json::Value>(j) {
                Ok(mut v) => {
                    scrub(&mut v, marks);
                    if p.contains("route") {
                        v = routes_compared(v);
                    }
                    // The kernel lists links by index, which is not portable (netscript
                    // chooses the indexes of the links it makes): by name instead.
                    if let serde_json::Value::Array(a) = &mut v {
                        a.sort_by_key(|x| x.get("ifname").and_then(|n| n.as_str()).map(str::to_string));
                    }
                    format!("{p}: {v}")
                }
                Err(e) => panic!("snapshot line is not JSON ({e}): {l}"),
            },
            None if marks == Marks::Drop => without_marks(l),
            None => l.to_string(),
        };
        out += &line;
        out.push('\n');
    }
    out
}

impl Sandbox {
    /// The `portable` state once it stops changing on its own (carrier, DAD).
    pub fn settled(&self, marks: Marks) -> String {
        let mut last = portable(&self.snapshot(), marks);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(400));
            let now = portable(&self.snapshot(), marks);
            if now == last {
                return now;
            }
            last = now;
        }
        last
    }
}

fn scrub(v: &mut serde_json::Value, marks: Marks) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            for k in [
                "bridge_id",
                "root_id",
                "designated_root",
                "designated_bridge",
                "link_netnsid",
                "ifindex",
                "link_index",
            ] {
                m.remove(k);
            }
            if marks == Marks::Drop {
                m.remove("ifalias");
                m.remove("protocol");
            }
            // A link's MAC (and its broadcast MAC); an IPv4 broadcast address stays.
            for k in ["address", "broadcast", "perm_address"] {
                if m.get(k).and_then(Value::as_str).is_some_and(is_mac) {
                    m.remove(k);
                }
            }
            // DAD in progress ("tentative") is timing, not state.
            if let Some(Value::Bool(true)) = m.get("tentative") {
                m.remove("tentative");
            }
            if m.get("local").and_then(Value::as_str).is_some_and(|a| a.starts_with("fe80:")) {
                m.insert("local".into(), Value::String("fe80::(link-local)".into()));
            }
            for x in m.values_mut() {
                scrub(x, marks);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| scrub(x, marks)),
        _ => {}
    }
}

/// A route listing in a fixed order: the kernel lists routes to one prefix (fe80::/64
/// of two links, say) in the order they were made, which a rollback that deletes and
/// restores one of them changes without changing the routes.
fn routes_sorted(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Array(a)) => {
            let mut v: Vec<String> = a.iter().map(|r| r.to_string()).collect();
            v.sort();
            format!("[{}]", v.join(","))
        }
        _ => json.to_string(),
    }
}

/// Routes as a set, without the host routes of IPv6 link-local addresses: those
/// derive from random MACs, and appear only once duplicate address detection is done.
fn routes_compared(v: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Array(routes) = v else { return v };
    let mut kept: Vec<String> = routes
        .into_iter()
        .filter(|r| {
            let dst = r.get("dst").and_then(serde_json::Value::as_str).unwrap_or("");
            !dst.starts_with("fe80:") || dst.contains('/')
        })
        .map(|r| r.to_string())
        .collect();
    kept.sort();
    serde_json::Value::Array(kept.into_iter().map(|r| serde_json::from_str(&r).unwrap()).collect())
}

fn is_mac(s: &str) -> bool {
    s.len() == 17 && s.split(':').all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()))
}

fn without_marks(rule: &str) -> String {
    let w: Vec<&str> = rule.split(' ').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < w.len() {
        let mark = w[i] == "-m"
            && w.get(1 + i) == Some(&"comment")
            && w.get(2 + i) == Some(&"--comment")
            && w.get(3 + i).is_some_and(|c| c.trim_matches('"').starts_with("netscript:"));
        if mark {
            i += 4;
            continue;
        }
        out.push(w[i]);
        i += 1;
    }
    out.join(" ")
}
