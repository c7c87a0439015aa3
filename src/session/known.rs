//! What the session knows of the links this run created, as its own changes left
//! them: the validation of later changes reads it here instead of asking the kernel
//! (two or three netlink round trips per read). Only on a back end that refuses taken
//! names and routes by itself (`Backend::refuses_duplicates`, the kernel): there a
//! creation is not preceded by a lookup either; when the kernel answers EEXIST, the
//! names (or the route) are looked up to say which one is taken.
//!
//! What is known is forgotten whenever something else could have changed it: a
//! process the script ran (`exec`, `os.execute`), a refused or failed change, a
//! deletion or a move (a veth takes its peer along, a port leaving a bridge changes
//! the bridge), a rollback, the next REPL line. After a process that keeps running
//! (`spawn`, `io.popen`) nothing is known for the rest of the session.

use crate::backend::LinkInfo;
use crate::error::{Error, Result};
use crate::fasthash::FastMap;
use crate::model::{NsRef, check_ifname};
use crate::op::Op;

use super::Session;

/// The links this run created and what it knows of them.
#[derive(Default)]
pub(super) struct Known {
    links: FastMap<(NsRef, String), KnownLink>,
    /// Off for the rest of the session: a process that may still change links runs.
    off: bool,
}

#[derive(Clone)]
struct KnownLink {
    info: LinkInfo,
    /// False once the kernel may have added addresses by itself (an IPv6 link-local
    /// address when the link goes up, 127.0.0.1 on lo).
    addrs: bool,
    /// False for a bridge with ports (its MTU follows theirs).
    mtu: bool,
}

/// What a validation needs to know of a link besides its existence, up state,
/// master, kind and alias.
#[derive(Clone, Copy, Default)]
pub(super) struct Need {
    pub addrs: bool,
    pub mtu: bool,
}

impl Need {
    pub const ADDRS: Need = Need { addrs: true, mtu: false };
    pub const MTU: Need = Need { addrs: false, mtu: true };
}

fn key(ns: &NsRef, name: &str) -> (NsRef, String) {
    (ns.clone(), name.to_string())
}

fn fresh(name: &str, kind: Option<&str>, mtu: u32, alias: Option<String>) -> KnownLink {
    KnownLink {
        info: LinkInfo {
            name: name.to_string(),
            up: false,
            master: None,
            mtu,
            kind: kind.map(str::to_string),
            alias,
            addrs: Vec::new(),
            nodad: Vec::new(),
            protos: Vec::new(),
        },
        addrs: true,
        mtu: true,
    }
}

impl Session {
    /// Forgets what the session knows of its links: they are read from the system
    /// again. For whatever could have changed them behind the session's back.
    pub fn forget_known(&mut self) {
        self.known.links.clear();
    }

    /// Forgets, and learns nothing more for the rest of the session: a process that
    /// may change links at any time runs (`spawn`, `io.popen`).
    pub fn distrust_known(&mut self) {
        self.known.links.clear();
        self.known.off = true;
    }

    /// Keeps what is known in step with a change this session handed to the back end
    /// (`ok`: it was made).
    pub(super) fn track(&mut self, op: &Op, ok: bool) {
        if self.known.off || !self.backend.refuses_duplicates() {
            return;
        }
        let links = &mut self.known.links;
        if !ok {
            // Whatever happened, the kernel knows better now.
            links.clear();
            return;
        }
        let mark = || Some(super::mark_for(&self.topo));
        match op {
            Op::AddNetns { name } => {
                links.insert(key(&NsRef::named(name.clone()), "lo"), fresh("lo", None, 65536, None));
            }
            Op::AddVeth { ns, name, peer, peer_ns, .. } => {
                links.insert(key(ns, name), fresh(name, Some("veth"), 1500, mark()));
                links.insert(key(peer_ns, peer), fresh(peer, Some("veth"), 1500, mark()));
            }
            Op::AddBridge { ns, name } => {
                links.insert(key(ns, name), fresh(name, Some("bridge"), 1500, mark()));
            }
            // A deleted namespace or veth takes links elsewhere along (the peer); a
            // port leaving a bridge changes the bridge's MTU; a moved link loses its
            // addresses: start over.
            Op::DelNetns { .. } | Op::DelLink { .. } | Op::MoveLink { .. } => links.clear(),
            Op::SetUp { ns, name, up } => {
                if let Some(k) = links.get_mut(&key(ns, name)) {
                    k.info.up = *up;
                    k.addrs &= !*up;
                }
            }
            Op::AddAddr { ns, dev, addr, nodad, proto } => {
                if let Some(k) = links.get_mut(&key(ns, dev)) {
                    k.info.addrs.push(*addr);
                    if *nodad {
                        k.info.nodad.push(*addr);
                    }
                    if let Some(p) = proto.filter(|p| *p != 0) {
                        k.info.protos.push((*addr, p));
                    }
                }
            }
            Op::DelAddr { ns, dev, addr, .. } => {
                if let Some(k) = links.get_mut(&key(ns, dev)) {
                    k.info.addrs.retain(|a| a != addr);
                    k.info.nodad.retain(|a| a != addr);
                    k.info.protos.retain(|(a, _)| a != addr);
                }
            }
            Op::SetMaster { ns, dev, master } => {
                let old = links.get_mut(&key(ns, dev)).map(|k| std::mem::replace(&mut k.info.master, master.clone()));
                // A bridge's MTU follows its ports (the old bridge's too).
                let bridges = master.iter().chain(old.as_ref().and_then(|o| o.as_ref()));
                for m in bridges {
                    if let Some(k) = links.get_mut(&key(ns, m)) {
                        k.mtu = false;
                    }
                }
                if old.is_none() {
                    // A link not known left some bridge: which one is not known.
                    links.retain(|_, k| k.info.kind.as_deref() != Some("bridge"));
                }
            }
            Op::SetMtu { ns, dev, mtu } => {
                if let Some(k) = links.get_mut(&key(ns, dev)) {
                    k.info.mtu = *mtu;
                }
                // The bridge of a port whose MTU changes follows it.
                links.retain(|_, k| k.info.kind.as_deref() != Some("bridge"));
            }
            // Keys that add or drop IPv6 addresses (disable_ipv6, addr_gen_mode, ...).
            Op::SetSysctl { key: k, .. } if k.contains("ipv6") => links.clear(),
            // Other kinds of link are read from the system; the rest does not change
            // what is known of a link (bridge options and port flags, qdiscs,
            // routes, other sysctls, the firewall, processes).
            _ => {}
        }
    }

    /// A link, for the validation of a change: what the session knows when this run
    /// created it (and `need` is known), else read from the system.
    pub(super) fn known_link(&mut self, ns: &NsRef, name: &str, need: Need) -> Result<LinkInfo> {
        match self.known.links.get(&key(ns, name)) {
            Some(k) if (k.addrs || !need.addrs) && (k.mtu || !need.mtu) => Ok(k.info.clone()),
            _ => self.link(ns, name),
        }
    }

    /// What is known of a link (None: not known, read it).
    pub(super) fn known_info(&self, ns: &NsRef, name: &str) -> Option<LinkInfo> {
        self.known.links.get(&key(ns, name)).map(|k| k.info.clone())
    }

    /// Whether a link exists (a handle's lookup: `link.get`, `Netns:link`): known, or
    /// read.
    pub fn link_exists(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        self.known_link(ns, name, Need::default()).map(|_| ())
    }

    /// The undo of creating link `name` in `ns`: its deletion, with the index the back
    /// end reserved for it where it reserves one (journaled before the link is made,
    /// so that a link a crash left unmarked is still provably this run's).
    pub(super) fn creation_undo(&mut self, ns: &NsRef, name: &str) -> Result<Vec<Op>> {
        let ifindex = self.backend.reserve_index(ns, name)?;
        Ok(vec![Op::DelLink { ns: ns.clone(), name: name.to_string(), ifindex }])
    }

    /// Creates links named `names` (`op`; the first is the one whose deletion undoes
    /// it). A back end that refuses a taken name by itself (the kernel: EEXIST) is not
    /// asked first; when it refuses, the names are looked up to say which one is taken.
    pub(super) fn create(&mut self, names: &[(&NsRef, &str)], op: Op) -> Result<()> {
        for (_, name) in names {
            check_ifname(name)?;
        }
        let (first_ns, first) = names[0];
        if !self.backend.refuses_duplicates() {
            for (ns, name) in names {
                self.require_free_name(ns, name)?;
            }
            let undo = self.creation_undo(first_ns, first)?;
            return self.change(op, undo);
        }
        for (ns, name) in names {
            self.require_ns(ns)?;
            if self.known.links.contains_key(&key(ns, name)) {
                return Err(Error::invalid(format!("a link named \"{name}\" already exists in {ns}")));
            }
        }
        let undo = self.creation_undo(first_ns, first)?;
        match self.change(op, undo) {
            Err(e) if e.errno() == Some(nix::errno::Errno::EEXIST) => {
                for (ns, name) in names {
                    self.require_free_name(ns, name)?;
                }
                Err(e)
            }
            r => r,
        }
    }
}
