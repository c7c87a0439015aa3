//! Link impairment and shaping as values: the root qdisc netscript puts on a link
//! (`netem` for delay / loss / ..., `tbf` for a rate limit), checked before the
//! kernel sees it, spelled as the words of a `tc qdisc replace` command, and read
//! back from what `tc -j qdisc show` reports (to restore exactly what was there).
//! No kernel access here.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A root qdisc: its kind, the words `tc` takes after the kind, and its handle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qdisc {
    pub kind: String,
    pub args: Vec<String>,
    /// Its handle's major number (tc's `1:` is 1): one of `QDISC_HANDLES`, netscript's
    /// ownership mark, for a qdisc netscript sets; the one it had for a qdisc read back
    /// (put back exactly); None: the kernel chooses (a script's request before the
    /// session gives it its mark, and records from before the mark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u16>,
}

/// The handles (major numbers) netscript gives the root qdiscs it sets: its ownership
/// mark for qdiscs (tc shows `qdisc tbf 4e53: root`). Two, because a root qdisc is
/// replaced in one step only by one of another handle (the kernel changes one of the
/// same handle in place, and refuses another kind there): each setting takes the one
/// the link's root does not have.
pub const QDISC_HANDLES: [u16; 2] = [0x4e53, 0x4e54];

/// The handle of the kernel's own root qdisc (`0:`), in a `RootQdisc::handle` and in
/// an undo's expectation (`Op::SetQdisc::over`).
pub const DEFAULT_HANDLE: u16 = 0;

impl Qdisc {
    /// "netem delay 50ms loss 1%": the kind and its words.
    pub fn words(&self) -> Vec<String> {
        let mut v = vec![self.kind.clone()];
        v.extend(self.args.iter().cloned());
        v
    }

    /// The words after `root` in a `tc qdisc replace` command: "handle 4e53: netem
    /// delay 50ms"; `marks`: with netscript's own handle too (the command run; what
    /// is printed leaves the mark out, as it does a link's alias).
    pub fn command_words(&self, marks: bool) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(h) = self.handle.filter(|h| marks || !QDISC_HANDLES.contains(h)) {
            v.extend(["handle".to_string(), format!("{h:x}:")]);
        }
        v.extend(self.words());
        v
    }

    /// The same kind and parameters (the handle aside).
    pub fn same_settings(&self, other: &Qdisc) -> bool {
        self.kind == other.kind && self.args == other.args
    }

    /// This qdisc with the handle of netscript's mark that `root` does not carry.
    pub fn marked_over(mut self, root: &RootQdisc) -> Qdisc {
        let [a, b] = QDISC_HANDLES;
        self.handle = Some(if root.handle() == a { b } else { a });
        self
    }

    /// A short description for `tostring(link)`: "netem delay 50ms loss 1%".
    pub fn describe(&self) -> String {
        self.words().join(" ")
    }
}

/// The root qdisc of a link as the system has it.
#[derive(Clone, Debug, PartialEq)]
pub enum RootQdisc {
    /// The one the kernel attached itself (handle 0:, or none): `tc qdisc del ...
    /// root` brings it back.
    Default,
    /// One that netscript knows how to make again.
    Known(Qdisc),
    /// Another kind (or parameters netscript cannot read back): `json` is what
    /// `tc -j qdisc show` said.
    Other { kind: String, handle: u16, json: String },
}

impl RootQdisc {
    /// Its handle's major number (`DEFAULT_HANDLE` for the kernel's own).
    pub fn handle(&self) -> u16 {
        match self {
            RootQdisc::Default => DEFAULT_HANDLE,
            RootQdisc::Known(q) => q.handle.unwrap_or(DEFAULT_HANDLE),
            RootQdisc::Other { handle, .. } => *handle,
        }
    }

    /// Its kind; None for the kernel's own.
    pub fn kind(&self) -> Option<&str> {
        match self {
            RootQdisc::Default => None,
            RootQdisc::Known(Qdisc { kind, .. }) | RootQdisc::Other { kind, .. } => Some(kind),
        }
    }

    /// "tbf 8001:", or "the kernel's default": for messages.
    pub fn describe(&self) -> String {
        match self.kind() {
            None => "the kernel's default".into(),
            Some(kind) => format!("{kind} {:x}:", self.handle()),
        }
    }
}

/// What an undo that expects the root qdisc with handle `over` (`Op::SetQdisc` /
/// `Op::DelQdisc`) does, given the root the link has now and what the undo puts
/// there (`target`; None: the kernel's default).
#[derive(Debug, PartialEq, Eq)]
pub enum UndoVerdict {
    /// The root is the one the change made: undo it.
    Apply,
    /// The root is already what the undo makes (an undo run a second time, after a
    /// crash): nothing to do.
    Done,
    /// Another qdisc took the place of the one the change made: leave it alone.
    NotOurs,
}

pub fn undo_verdict(root: &RootQdisc, over: u16, target: Option<&Qdisc>) -> UndoVerdict {
    let done = match target {
        None => root.handle() == DEFAULT_HANDLE,
        Some(t) => t.handle == Some(root.handle()) && root.kind() == Some(t.kind.as_str()),
    };
    if root.handle() == over {
        UndoVerdict::Apply
    } else if done {
        UndoVerdict::Done
    } else {
        UndoVerdict::NotOurs
    }
}

/// `Link:impair{...}`: the netem options, as the script gave them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impair {
    pub delay: Option<String>,
    pub jitter: Option<String>,
    pub loss: Option<String>,
    pub duplicate: Option<String>,
    pub corrupt: Option<String>,
    pub reorder: Option<String>,
    pub rate: Option<String>,
}

/// `Link:shape{...}`: the tbf options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Shape {
    pub rate: String,
    pub burst: Option<String>,
    pub latency: Option<String>,
}

/// A number with an optional fraction, then a unit from `units`; returns the number
/// and the unit.
fn number_unit<'a>(s: &'a str, units: &[&'a str]) -> Option<(f64, &'a str)> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    units.iter().find(|u| **u == unit).map(|u| (n, *u))
}

/// A duration: "50ms", "1.5s", "200us".
pub fn check_time(what: &str, s: &str) -> Result<()> {
    match number_unit(s, &["us", "ms", "s"]) {
        Some(_) => Ok(()),
        None => Err(Error::invalid(format!("{what} \"{s}\" is not a time (a number and us, ms or s, like \"50ms\")"))),
    }
}

/// A percentage: "1%", "0.5%".
pub fn check_percent(what: &str, s: &str) -> Result<()> {
    match s.strip_suffix('%').and_then(|n| number_unit(n, &[""])) {
        Some((n, _)) if n <= 100.0 => Ok(()),
        _ => Err(Error::invalid(format!("{what} \"{s}\" is not a percentage from 0% to 100% (like \"1%\")"))),
    }
}

/// A rate as tc spells it: "10mbit", "512kbit", "1gbit", "1000000bit"; returns it in
/// bits per second. (tc's "bps" means bytes per second; it is refused here, as a trap.)
pub fn parse_rate(what: &str, s: &str) -> Result<f64> {
    let bad = || {
        Error::invalid(format!("{what} \"{s}\" is not a rate (a number and bit, kbit, mbit or gbit, like \"10mbit\")"))
    };
    let (n, unit) = number_unit(s, &["bit", "kbit", "mbit", "gbit"]).ok_or_else(bad)?;
    let bits = n * match unit {
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => 1.0,
    };
    if bits < 8.0 {
        return Err(bad());
    }
    Ok(bits)
}

/// A size as tc spells it: "32kb", "1500b", "1mb" (bytes, kilobytes, megabytes).
pub fn check_size(what: &str, s: &str) -> Result<()> {
    match number_unit(s, &["b", "kb", "mb"]) {
        Some((n, _)) if n > 0.0 => Ok(()),
        _ => Err(Error::invalid(format!("{what} \"{s}\" is not a size (a number and b, kb or mb, like \"32kb\")"))),
    }
}

impl Impair {
    /// The netem qdisc these options ask for.
    pub fn qdisc(&self) -> Result<Qdisc> {
        let mut args = Vec::new();
        if let Some(d) = &self.delay {
            check_time("delay", d)?;
            args.extend(["delay".to_string(), d.clone()]);
            if let Some(j) = &self.jitter {
                check_time("jitter", j)?;
                args.push(j.clone());
            }
        } else if self.jitter.is_some() {
            return Err(Error::invalid("jitter needs a delay (jitter varies the delay)"));
        } else if self.reorder.is_some() {
            return Err(Error::invalid("reorder needs a delay (packets are reordered by sending some without it)"));
        }
        for (name, v) in [
            ("loss", &self.loss),
            ("duplicate", &self.duplicate),
            ("corrupt", &self.corrupt),
            ("reorder", &self.reorder),
        ] {
            if let Some(p) = v {
                check_percent(name, p)?;
                args.extend([name.to_string(), p.clone()]);
            }
        }
        if let Some(r) = &self.rate {
            parse_rate("rate", r)?;
            args.extend(["rate".to_string(), r.clone()]);
        }
        if args.is_empty() {
            return Err(Error::invalid(
                "impair needs at least one of delay, loss, duplicate, corrupt, reorder, rate (unimpair() removes one)",
            ));
        }
        Ok(Qdisc { kind: "netem".into(), args, handle: None })
    }
}

impl Shape {
    /// The tbf qdisc these options ask for. Without `burst`: a hundredth of a second
    /// at the rate, 16kb at least; without `latency`: 50ms.
    pub fn qdisc(&self) -> Result<Qdisc> {
        let bits = parse_rate("rate", &self.rate)?;
        let burst = match &self.burst {
            Some(b) => {
                check_size("burst", b)?;
                b.clone()
            }
            None => format!("{}b", ((bits / 8.0 / 100.0) as u64).max(16384)),
        };
        let latency = match &self.latency {
            Some(l) => {
                check_time("latency", l)?;
                l.clone()
            }
            None => "50ms".into(),
        };
        let args = ["rate", &self.rate, "burst", &burst, "latency", &latency].iter().map(|s| s.to_string()).collect();
        Ok(Qdisc { kind: "tbf".into(), args, handle: None })
    }
}

/// The root qdisc in `tc -j qdisc show dev X root` output.
pub fn root_from_json(json: &str) -> Result<RootQdisc> {
    let v = tc_json(json)?;
    let root = v.as_array().and_then(|a| a.iter().find(|q| q["root"].as_bool() == Some(true)));
    let Some(q) = root else { return Ok(RootQdisc::Default) };
    let kind = q["kind"].as_str().unwrap_or_default().to_string();
    let handle = handle_of(q);
    if handle == Some(DEFAULT_HANDLE) || kind == "noop" {
        return Ok(RootQdisc::Default);
    }
    // A root qdisc other than the kernel's always has a handle; one not read is
    // taken for none of netscript's.
    let handle = handle.unwrap_or(u16::MAX);
    let o = &q["options"];
    let num = |k: &str| o[k].as_u64();
    let known = match kind.as_str() {
        "tbf" => match (num("rate"), num("burst")) {
            (Some(rate), Some(burst)) => {
                let mut args = vec!["rate".into(), format!("{}bit", rate * 8), "burst".into(), format!("{burst}b")];
                match (num("lat"), num("limit")) {
                    (Some(lat), _) => args.extend(["latency".into(), format!("{lat}us")]),
                    (None, Some(limit)) => args.extend(["limit".into(), format!("{limit}b")]),
                    _ => {}
                }
                Some(args)
            }
            _ => None,
        },
        "pfifo" | "bfifo" => num("limit").map(|l| vec!["limit".into(), l.to_string()]),
        "netem" => netem_args(o),
        _ => None,
    };
    Ok(match known {
        Some(args) => RootQdisc::Known(Qdisc { kind, args, handle: Some(handle) }),
        None => RootQdisc::Other { kind, handle, json: q.to_string() },
    })
}

/// The output of `tc -j qdisc show`, parsed.
fn tc_json(json: &str) -> Result<serde_json::Value> {
    serde_json::from_str(json.trim())
        .map_err(|e| Error::sys(format!("cannot read the output of tc -j qdisc show: {e}"), None))
}

/// A qdisc's handle's major number, from tc's JSON (`"4e53:"` is 0x4e53).
fn handle_of(q: &serde_json::Value) -> Option<u16> {
    q["handle"].as_str().and_then(|h| u16::from_str_radix(h.strip_suffix(':')?, 16).ok())
}

/// The links whose root qdisc has one of netscript's handles (`QDISC_HANDLES`), with
/// that handle, from `tc -j qdisc show` of a whole namespace.
pub fn marked_roots_from_json(json: &str) -> Result<Vec<(String, u16)>> {
    let v = tc_json(json)?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter(|q| q["root"].as_bool() == Some(true))
        .filter_map(|q| Some((q["dev"].as_str()?.to_string(), handle_of(q).filter(|h| QDISC_HANDLES.contains(h))?)))
        .collect())
}

/// The netem options iproute2 prints in JSON, back as tc words (the ones
/// `Link:impair` sets; anything else makes the qdisc one netscript cannot restore).
fn netem_args(o: &serde_json::Value) -> Option<Vec<String>> {
    let secs = |v: &serde_json::Value| v.as_f64().map(|s| format!("{}us", (s * 1e6).round() as u64));
    let pct = |v: &serde_json::Value| v.as_f64().map(|p| format!("{}%", (p * 1e6).round() / 1e4));
    let mut args = Vec::new();
    let known = ["limit", "delay", "loss-random", "duplicate", "corrupt", "reorder", "rate", "ecn", "gap"];
    if o.as_object()?.keys().any(|k| !known.contains(&k.as_str())) {
        return None;
    }
    if let Some(l) = o["limit"].as_u64() {
        args.extend(["limit".into(), l.to_string()]);
    }
    if o["delay"].is_object() {
        args.extend(["delay".into(), secs(&o["delay"]["delay"])?]);
        if let Some(j) = o["delay"]["jitter"].as_f64().filter(|j| *j > 0.0) {
            args.push(format!("{}us", (j * 1e6).round() as u64));
        }
    }
    for (key, word) in
        [("loss-random", "loss"), ("duplicate", "duplicate"), ("corrupt", "corrupt"), ("reorder", "reorder")]
    {
        let inner = if key == "loss-random" { "loss" } else { key };
        if o[key].is_object() {
            args.extend([word.into(), pct(&o[key][inner])?]);
        }
    }
    if o["rate"].is_object() {
        args.extend(["rate".into(), format!("{}bit", o["rate"]["rate"].as_u64()? * 8)]);
    }
    Some(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impair_words() {
        let i = Impair {
            delay: Some("50ms".into()),
            jitter: Some("5ms".into()),
            loss: Some("1%".into()),
            ..Default::default()
        };
        assert_eq!(i.qdisc().unwrap().describe(), "netem delay 50ms 5ms loss 1%");
        assert!(Impair { jitter: Some("5ms".into()), ..Default::default() }.qdisc().is_err());
        assert!(Impair { loss: Some("101%".into()), ..Default::default() }.qdisc().is_err());
        assert!(Impair { delay: Some("50".into()), ..Default::default() }.qdisc().is_err());
        assert!(Impair { delay: Some("5ms; reboot".into()), ..Default::default() }.qdisc().is_err());
        assert!(Impair::default().qdisc().is_err());
    }

    #[test]
    fn shape_words() {
        let s = Shape { rate: "8mbit".into(), burst: None, latency: None };
        assert_eq!(s.qdisc().unwrap().describe(), "tbf rate 8mbit burst 16384b latency 50ms");
        let s = Shape { rate: "1gbit".into(), burst: Some("64kb".into()), latency: Some("10ms".into()) };
        assert_eq!(s.qdisc().unwrap().describe(), "tbf rate 1gbit burst 64kb latency 10ms");
        assert!(Shape { rate: "10mbps".into(), ..Default::default() }.qdisc().is_err());
        assert!(Shape { rate: "fast".into(), ..Default::default() }.qdisc().is_err());
    }

    /// netscript's handle is the mark the root does not carry; an undo acts over the
    /// handle the change left, finds itself done when the root is already what it
    /// makes, and leaves anything else alone.
    #[test]
    fn handles_and_undo_verdicts() {
        let tbf = |h: u16| Qdisc { kind: "tbf".into(), args: vec!["rate".into(), "8mbit".into()], handle: Some(h) };
        let [a, b] = QDISC_HANDLES;
        assert_eq!(tbf(1).marked_over(&RootQdisc::Default).handle, Some(a));
        assert_eq!(tbf(1).marked_over(&RootQdisc::Known(tbf(a))).handle, Some(b));
        assert_eq!(tbf(1).marked_over(&RootQdisc::Known(tbf(b))).handle, Some(a));
        assert_eq!(tbf(1).marked_over(&RootQdisc::Known(tbf(0x8001))).handle, Some(a));
        assert!(tbf(a).same_settings(&tbf(b)));
        assert_eq!(tbf(a).command_words(true)[..2], ["handle", "4e53:"]);
        assert_eq!(tbf(a).command_words(false), ["tbf", "rate", "8mbit"]);
        assert_eq!(tbf(0x8001).command_words(false)[..3], ["handle", "8001:", "tbf"]);

        use UndoVerdict::*;
        let foreign = tbf(0x8001);
        // Undo of a shape over a foreign tbf: put it back over ours.
        assert_eq!(undo_verdict(&RootQdisc::Known(tbf(a)), a, Some(&foreign)), Apply);
        assert_eq!(undo_verdict(&RootQdisc::Known(foreign.clone()), a, Some(&foreign)), Done);
        let pfifo = RootQdisc::Other { kind: "pfifo".into(), handle: 1, json: String::new() };
        assert_eq!(undo_verdict(&pfifo, a, Some(&foreign)), NotOurs);
        assert_eq!(undo_verdict(&RootQdisc::Default, a, Some(&foreign)), NotOurs);
        // Undo of a shape over the default: delete ours.
        assert_eq!(undo_verdict(&RootQdisc::Known(tbf(a)), a, None), Apply);
        assert_eq!(undo_verdict(&RootQdisc::Default, a, None), Done);
        assert_eq!(undo_verdict(&RootQdisc::Known(tbf(b)), a, None), NotOurs);
        // Undo of an unimpair: put the removed one back over the default only.
        assert_eq!(undo_verdict(&RootQdisc::Default, DEFAULT_HANDLE, Some(&foreign)), Apply);
        assert_eq!(undo_verdict(&pfifo, DEFAULT_HANDLE, Some(&foreign)), NotOurs);
    }

    /// Of a whole namespace's qdiscs, the roots with netscript's handles: not a child
    /// qdisc with one, not a root with another.
    #[test]
    fn marked_roots_are_read_from_a_namespaces_tc_json() {
        let json = r#"[{"kind":"noqueue","handle":"0:","dev":"lo","root":true,"refcnt":2,"options":{}},
            {"kind":"tbf","handle":"4e53:","dev":"a","root":true,"refcnt":2,"options":{"rate":125000,"burst":32768,"lat":50000}},
            {"kind":"tbf","handle":"1:","dev":"b","root":true,"refcnt":2,"options":{"rate":125000,"burst":32768,"lat":50000}},
            {"kind":"netem","handle":"4e54:","dev":"c","parent":"1:1","options":{}},
            {"kind":"netem","handle":"4e54:","dev":"d","root":true,"refcnt":2,"options":{}}]"#;
        assert_eq!(marked_roots_from_json(json).unwrap(), vec![("a".to_string(), 0x4e53), ("d".to_string(), 0x4e54)]);
        assert!(marked_roots_from_json("not json").is_err());
    }

    #[test]
    fn reads_tc_json() {
        let dflt = r#"[{"kind":"noqueue","handle":"0:","root":true,"refcnt":2,"options":{}}]"#;
        assert_eq!(root_from_json(dflt).unwrap(), RootQdisc::Default);
        assert_eq!(root_from_json("[]").unwrap(), RootQdisc::Default);
        let tbf = r#"[{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,"options":{"rate":1250000,"burst":16383,"lat":50000}}]"#;
        assert_eq!(
            root_from_json(tbf).unwrap(),
            RootQdisc::Known(Qdisc {
                kind: "tbf".into(),
                args: ["rate", "10000000bit", "burst", "16383b", "latency", "50000us"].map(String::from).to_vec(),
                handle: Some(0x8001),
            })
        );
        let htb = r#"[{"kind":"htb","handle":"1:","root":true,"options":{"r2q":10}}]"#;
        assert!(matches!(root_from_json(htb).unwrap(), RootQdisc::Other { handle: 1, .. }));
    }
}
