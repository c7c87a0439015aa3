//! The session's link kinds beyond veth and bridge (`link.add`), bridge options and
//! port flags, and root qdiscs (impairment and shaping). Same pattern as the rest of
//! the session: validate against the system, journal with the undo computed from
//! what was there before, then change.

use crate::backend::LinkInfo;
use crate::error::{Error, Result};
use crate::journal::State;
use crate::model::{NsRef, check_ifname};
use crate::op::{BridgeOpts, LinkKind, Op, PortFlags};
use crate::qdisc::{DEFAULT_HANDLE, Qdisc, RootQdisc};

use super::Session;

/// The macvlan / macvtap modes the kernel has.
pub const MACVLAN_MODES: &[&str] = &["bridge", "private", "vepa", "passthru", "source"];

impl Session {
    /// Makes a link of another kind (vxlan, macvlan, macvtap, vlan, dummy, ifb) named
    /// `name` in `ns`. Its parent / underlay link (if any) is looked up in `from`; the
    /// link is created from there straight into `ns`.
    pub fn link_add(&mut self, name: &str, ns: &NsRef, link: LinkKind, from: &NsRef) -> Result<()> {
        check_ifname(name)?;
        self.require_ns(ns)?;
        self.require_ns(from)?;
        match &link {
            LinkKind::Vxlan { id, remote, local, port, .. } => {
                if *id >= 1 << 24 {
                    return Err(Error::invalid(format!("vxlan id {id} is out of range (0 to 16777215)")));
                }
                if *port == 0 {
                    return Err(Error::invalid("vxlan port 0 is not a UDP port"));
                }
                if let (Some(r), Some(l)) = (remote, local)
                    && r.is_ipv6() != l.is_ipv6()
                {
                    return Err(Error::invalid(format!("vxlan remote {r} and local {l} are of different IP versions")));
                }
            }
            LinkKind::Macvlan { mode, .. } | LinkKind::Macvtap { mode, .. } => {
                if !MACVLAN_MODES.contains(&mode.as_str()) {
                    return Err(Error::invalid(format!(
                        "unknown {} mode \"{mode}\" (known: {})",
                        link.name(),
                        MACVLAN_MODES.join(", ")
                    )));
                }
            }
            LinkKind::Vlan { id, .. } => {
                if !(1..=4094).contains(id) {
                    return Err(Error::invalid(format!("vlan id {id} is out of range (1 to 4094)")));
                }
            }
            LinkKind::Dummy | LinkKind::Ifb => {}
        }
        if let Some(p) = link.lower() {
            check_ifname(p)?;
            if self.backend.link(from, p)?.is_none() {
                return Err(Error::invalid(format!("{} \"{name}\": no link named \"{p}\" in {from}", link.name())));
            }
        }
        if self.backend.link(ns, name)?.is_some() {
            return Err(Error::invalid(format!("a link named \"{name}\" already exists in {ns}")));
        }
        let op = Op::AddLink { ns: ns.clone(), name: name.into(), link, from: from.clone() };
        let undo = self.creation_undo(ns, name)?;
        self.change(op, undo)
    }

    fn bridge_link(&mut self, ns: &NsRef, name: &str) -> Result<LinkInfo> {
        let l = self.link(ns, name)?;
        if l.kind.as_deref() != Some("bridge") {
            return Err(Error::invalid(format!("\"{name}\" in {ns} is not a bridge")));
        }
        Ok(l)
    }

    /// `bridge.add` with its options, as one call: when the kernel refuses an option
    /// (no VLAN filtering, say) the bridge goes again, so that the failed call has
    /// made no change (and a retry without the option finds the name free).
    pub fn bridge_add_with(&mut self, name: &str, ns: &NsRef, opts: BridgeOpts) -> Result<()> {
        let mark = self.journal.entries().len();
        self.bridge_add(name, ns)?;
        self.bridge_set(ns, name, opts).inspect_err(|_| {
            // Only this call's own entries (a bridge and its options: no firewall
            // change is queued among them).
            let made: Vec<usize> = self.journal.live_positions_newest_first().take_while(|&p| p >= mark).collect();
            let _ = self.undo_entries(&made, |_| {});
        })
    }

    /// Sets bridge options (vlan_filtering, stp); rollback restores the old values.
    pub fn bridge_set(&mut self, ns: &NsRef, name: &str, opts: BridgeOpts) -> Result<()> {
        self.bridge_link(ns, name)?;
        let now = self.backend.bridge_opts(ns, name)?;
        let change = BridgeOpts {
            vlan_filtering: opts.vlan_filtering.filter(|v| now.vlan_filtering != Some(*v)),
            stp: opts.stp.filter(|v| now.stp != Some(*v)),
        };
        if change == BridgeOpts::default() {
            return Ok(());
        }
        let old =
            BridgeOpts { vlan_filtering: change.vlan_filtering.and(now.vlan_filtering), stp: change.stp.and(now.stp) };
        let undo = Op::SetBridge { ns: ns.clone(), name: name.into(), opts: old };
        self.change(Op::SetBridge { ns: ns.clone(), name: name.into(), opts: change }, vec![undo])
    }

    /// Sets flags of a bridge port (hairpin, isolated, learning, flood); rollback
    /// restores the old values.
    pub fn bridge_port(&mut self, ns: &NsRef, dev: &str, flags: PortFlags) -> Result<()> {
        let l = self.link(ns, dev)?;
        if l.master.is_none() {
            return Err(Error::invalid(format!(
                "link \"{dev}\" in {ns} is not a bridge port (give it a master bridge first: Link:master(br))"
            )));
        }
        let now = self.backend.port_flags(ns, dev)?;
        let pick = |want: Option<bool>, have: Option<bool>| want.filter(|v| have != Some(*v));
        let change = PortFlags {
            hairpin: pick(flags.hairpin, now.hairpin),
            isolated: pick(flags.isolated, now.isolated),
            learning: pick(flags.learning, now.learning),
            flood: pick(flags.flood, now.flood),
        };
        if change == PortFlags::default() {
            return Ok(());
        }
        let undo = Op::SetBridgePort { ns: ns.clone(), dev: dev.into(), flags: now.restricted_to(&change) };
        self.change(Op::SetBridgePort { ns: ns.clone(), dev: dev.into(), flags: change }, vec![undo])
    }

    /// The qdisc this run last put on `dev`, if it is still in effect.
    fn our_qdisc(&self, ns: &NsRef, dev: &str) -> Option<Qdisc> {
        self.journal.entries().iter().rev().filter(|e| e.state == State::Done && e.live()).find_map(|e| {
            match &e.op {
                Op::SetQdisc { ns: n, dev: d, qdisc, .. } if n == ns && d == dev => Some(Some(qdisc.clone())),
                Op::DelQdisc { ns: n, dev: d, .. } if n == ns && d == dev => Some(None),
                _ => None,
            }
        })?
    }

    /// The root qdisc of a link; the one this run set (its kind, and its handle),
    /// with the parameters as the script gave them (the kernel rounds some).
    pub fn qdisc(&mut self, ns: &NsRef, dev: &str) -> Result<RootQdisc> {
        self.link(ns, dev)?;
        let root = self.backend.root_qdisc(ns, dev)?;
        Ok(match self.our_qdisc(ns, dev) {
            Some(q) if root.kind() == Some(q.kind.as_str()) && q.handle.is_none_or(|h| h == root.handle()) => {
                RootQdisc::Known(q)
            }
            _ => root,
        })
    }

    /// The op that puts back the root qdisc `root` of `dev`, once the change that
    /// leaves the one with handle `over` there is undone: only while that one is.
    fn restore_qdisc(ns: &NsRef, dev: &str, root: RootQdisc, over: u16) -> Result<Op> {
        match root {
            RootQdisc::Default => Ok(Op::DelQdisc { ns: ns.clone(), dev: dev.into(), over: Some(over) }),
            RootQdisc::Known(q) => Ok(Op::SetQdisc { ns: ns.clone(), dev: dev.into(), qdisc: q, over: Some(over) }),
            RootQdisc::Other { kind, json, .. } => Err(Error::invalid(format!(
                "link \"{dev}\" in {ns} has a root qdisc netscript cannot put back exactly ({kind}: {json}); \
                 it changes only what it can restore (remove that qdisc first: {})",
                Op::DelQdisc { ns: ns.clone(), dev: dev.into(), over: None }.render()
            ))),
        }
    }

    /// Makes `qdisc` the root qdisc of `dev` (impair, shape), with netscript's handle
    /// (`Qdisc::marked_over`); rollback restores the one that was there, while the
    /// root is still the one set here.
    pub fn qdisc_set(&mut self, ns: &NsRef, dev: &str, qdisc: Qdisc) -> Result<()> {
        let before = self.qdisc(ns, dev)?;
        if matches!(&before, RootQdisc::Known(q) if q.same_settings(&qdisc)) {
            return Ok(());
        }
        let qdisc = qdisc.marked_over(&before);
        let over = qdisc.handle.unwrap_or(DEFAULT_HANDLE);
        let undo = Self::restore_qdisc(ns, dev, before, over)?;
        self.change(Op::SetQdisc { ns: ns.clone(), dev: dev.into(), qdisc, over: None }, vec![undo])
    }

    /// Gives `dev` back the kernel's default root qdisc (unimpair); rollback puts the
    /// removed one back, while the kernel's is still there.
    pub fn qdisc_clear(&mut self, ns: &NsRef, dev: &str) -> Result<()> {
        let before = self.qdisc(ns, dev)?;
        if before == RootQdisc::Default {
            return Ok(());
        }
        let undo = Self::restore_qdisc(ns, dev, before, DEFAULT_HANDLE)?;
        self.change(Op::DelQdisc { ns: ns.clone(), dev: dev.into(), over: None }, vec![undo])
    }
}
