//! The kernel side: namespaces, netlink, sysctl, processes. No Lua, no journal.
pub mod kconfig;
pub mod netlink;
pub mod netns;
pub mod process;
pub mod sysctl;
pub mod tc;
