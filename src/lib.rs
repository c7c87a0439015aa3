//! netscript: build Linux network topologies from Lua, with a journal that undoes
//! everything a run did.
//!
//! The layers, from the script down:
//! `lua` (bindings) -> `session::Session` (validation, journal, rollback) ->
//! `backend::Backend` (`kernel::Kernel` for real; a model for `plan`) ->
//! `sys` (netlink, namespaces, sysctl, processes) and `firewall`.

pub mod backend;
pub mod cli;
pub mod cmd;
pub mod error;
pub mod fasthash;
pub mod faults;
pub mod firewall;
pub mod inspect;
pub mod journal;
pub mod kernel;
pub mod lua;
pub mod model;
pub mod observer;
pub mod op;
pub mod plan;
pub mod qdisc;
pub mod repl;
pub mod sandbox;
pub mod session;
pub mod state;
pub mod sys;
pub mod tag_first;
pub mod term;
pub mod trace;
pub mod trusted;

pub use error::{Error, Result};
