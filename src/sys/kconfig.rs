//! What the running kernel was built with (`/proc/config.gz`), for the plan back end:
//! a plan reads, as the kernel would answer, that a qdisc or link kind is missing.
//! Only an option the config says is off counts as missing; without a readable
//! config everything is assumed present.

use std::collections::HashMap;
use std::sync::OnceLock;

fn config() -> &'static Option<HashMap<String, String>> {
    static CONFIG: OnceLock<Option<HashMap<String, String>>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let out = std::process::Command::new("gzip")
            .args(["-dc", "/proc/config.gz"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Some(text.lines().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect())
    })
}

/// True when the kernel's config is known and `option` (CONFIG_...) is neither built
/// in nor a module.
pub fn lacks(option: &str) -> bool {
    match config() {
        Some(c) => !matches!(c.get(option).map(String::as_str), Some("y" | "m")),
        None => false,
    }
}

/// The config option and module behind a link kind of `link.add`.
pub fn link_kind_option(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "vlan" => ("CONFIG_VLAN_8021Q", "8021q"),
        "vxlan" => ("CONFIG_VXLAN", "vxlan"),
        "macvlan" => ("CONFIG_MACVLAN", "macvlan"),
        "macvtap" => ("CONFIG_MACVTAP", "macvtap"),
        "ifb" => ("CONFIG_IFB", "ifb"),
        _ => ("CONFIG_DUMMY", "dummy"),
    }
}

/// The error text for a link kind the kernel cannot make: the module, and what works.
pub fn missing_link_kind(kind: &str) -> String {
    let (_, module) = link_kind_option(kind);
    format!(
        "this kernel cannot make {kind} links (module {module} is missing; `modprobe {module}` on the host may add it). \
         veth pairs, bridges and the other link kinds it has still work"
    )
}

/// The error text for a bridge without VLAN filtering.
pub const NO_VLAN_FILTERING: &str = "this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING); \
                                     the bridge works without it, and stp can be set";
