//! What a rule string may hold. A rule is what comes after `iptables -t TABLE -A
//! CHAIN`: matches and a target. Table, chain and command are arguments of their own
//! (the journal records them), so a rule that spells any of them again, asks for help
//! or the version (iptables prints it and exits 0 having done nothing), runs a
//! program (`--modprobe`), or carries a line break (a new command in
//! `iptables-restore` input) is refused before anything is journaled.
//!
//! The rest of the rule syntax the session needs is here too: the ownership mark on
//! a rule, and reading the `-S` listing a driver returns (its rules, which one a
//! deletion removed, in its canonical spelling). The session knows no iptables
//! syntax itself.

use std::net::IpAddr;

use super::Family;
use crate::error::{Error, Result};
use crate::model::split_words;

/// iptables' own short options (xshared.h, 1.8: OPTSTRING_COMMON plus the iptables
/// ones): the letter and whether it takes an argument (required or optional; either
/// way the rest of the word is that argument).
const SHORT_WITH_ARG: &str = "ACDEFILMNPRSWZcdghijmopstw";
const SHORT_FLAGS: &str = "Vbfnvx46";

/// The options a rule must not contain: (short letter, long name, why).
const REFUSED: &[(Option<char>, &str, &str)] = &[
    (Some('A'), "append", "is a command"),
    (Some('C'), "check", "is a command"),
    (Some('D'), "delete", "is a command"),
    (Some('I'), "insert", "is a command"),
    (Some('R'), "replace", "is a command"),
    (Some('L'), "list", "is a command"),
    (Some('S'), "list-rules", "is a command"),
    (Some('F'), "flush", "is a command"),
    (Some('Z'), "zero", "is a command"),
    (Some('N'), "new-chain", "is a command"),
    (Some('X'), "delete-chain", "is a command"),
    (Some('E'), "rename-chain", "is a command"),
    (Some('P'), "policy", "is a command"),
    (Some('t'), "table", "names the table, which is an argument of its own"),
    (Some('h'), "help", "makes iptables print its help and add nothing"),
    (Some('V'), "version", "makes iptables print its version and add nothing"),
    (Some('M'), "modprobe", "runs a program"),
];

/// Long options of matches that start like a refused one, allowed once their match
/// is loaded (getopt takes an exact name first): `-m policy --pol ipsec`.
const MATCH_LONG: &[(&str, &str)] = &[("policy", "pol")];

/// Splits a rule string into words (shell-like quoting) and checks every word.
/// Errors name the word and say why.
pub fn parse_rule(rule: &str) -> Result<Vec<String>> {
    // Before splitting: a line break between words would be a new command in
    // iptables-restore input if it ever reached it.
    if let Some(c) = rule.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(Error::invalid(format!(
            "the rule contains the control character {c:?}; rules cannot hold line breaks, NUL or other control characters"
        )));
    }
    let words = split_words(rule)?;
    if words.is_empty() {
        return Err(Error::invalid("empty rule"));
    }
    check_rule_words(&words)?;
    Ok(words)
}

/// Checks rule words (see the module comment).
pub fn check_rule_words(words: &[String]) -> Result<()> {
    let mut matches: Vec<&str> = Vec::new();
    let mut prev: Option<&str> = None;
    for w in words {
        if let Some(c) = w.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "rule word {w:?} contains the control character {c:?}; rules cannot hold line breaks, NUL or other control characters"
            )));
        }
        if matches!(prev, Some("-m" | "--match")) {
            matches.push(w);
        }
        if let Some((opt, why)) = refused_option(w, &matches) {
            return Err(Error::invalid(format!(
                "rule word {w:?} is iptables' {opt} option, which {why}; a rule holds only matches and a target (table and chain are fw's own arguments)"
            )));
        }
        prev = Some(w);
    }
    Ok(())
}

/// The refused option a word spells, if any: ("-t/--table", why).
fn refused_option(w: &str, matches: &[&str]) -> Option<(String, &'static str)> {
    let name = |short: Option<char>, long: &str| match short {
        Some(c) => format!("-{c}/--{long}"),
        None => format!("--{long}"),
    };
    if let Some(long) = w.strip_prefix("--") {
        let long = long.split_once('=').map_or(long, |(n, _)| n);
        if long.is_empty() {
            return None;
        }
        if MATCH_LONG.iter().any(|(m, o)| *o == long && matches.contains(m)) {
            return None;
        }
        // getopt takes any unambiguous prefix of a long option.
        return REFUSED.iter().find(|(_, l, _)| l.starts_with(long)).map(|(s, l, why)| (name(*s, l), *why));
    }
    let cluster = w.strip_prefix('-')?;
    // Short options cluster (`-vA`); the first one that takes an argument takes the
    // rest of the word (`-tnat`, `-jACCEPT`).
    for c in cluster.chars() {
        if let Some((s, l, why)) = REFUSED.iter().find(|(s, _, _)| *s == Some(c)) {
            return Some((name(*s, l), *why));
        }
        if SHORT_WITH_ARG.contains(c) || !SHORT_FLAGS.contains(c) {
            return None;
        }
    }
    None
}

/// Options whose value is free text (never an address to check).
const TEXT_OPTIONS: &[&str] = &["--comment", "--log-prefix", "--nflog-prefix", "--string", "--hex-string"];

/// The family of an address a word spells: `10.0.0.1`, `10.0.0.0/24`,
/// `10.0.0.0/255.255.255.0`, `10.0.0.2:80`, `10.0.0.2-10.0.0.9`, `fd00::1`,
/// `fd00::/64`, `[fd00::2]:80`; a list of them (`a,b`), negated or not (`!a`).
fn word_family(w: &str) -> Option<Family> {
    // Every address has a '.' (IPv4) or a ':' (IPv6): most words are neither.
    if !w.contains(['.', ':']) {
        return None;
    }
    let w = w.strip_prefix('!').unwrap_or(w);
    w.split(',').find_map(|p| {
        if let Some(rest) = p.strip_prefix('[') {
            return rest.split(']').next()?.parse::<IpAddr>().ok().map(Family::of);
        }
        let head = p.split('/').next()?;
        let head = head.split_once('-').map_or(head, |(a, _)| a);
        if let Ok(a) = head.parse::<IpAddr>() {
            return Some(Family::of(a));
        }
        // An IPv4 address with a port (`10.0.0.2:80`, `10.0.0.2:80-90`).
        let (a, _) = head.split_once(':')?;
        a.parse::<std::net::Ipv4Addr>().ok().map(|_| Family::Ipv4)
    })
}

/// Refuses a rule that names an address of the other family: an IPv6 address in an
/// iptables rule, an IPv4 one in an ip6tables rule. The error names the word and
/// the family to use.
pub fn check_family(words: &[String], fam: Family) -> Result<()> {
    let mut prev: Option<&str> = None;
    for w in words {
        let text = prev.is_some_and(|p| TEXT_OPTIONS.contains(&p));
        prev = Some(w);
        if text {
            continue;
        }
        match (word_family(w), fam) {
            (Some(Family::Ipv6), Family::Ipv4) => {
                return Err(Error::invalid(format!(
                    "rule word {w:?} is an IPv6 address; IPv6 rules go to ip6tables: use family \"ipv6\" ({{family = \"ipv6\"}})"
                )));
            }
            (Some(Family::Ipv4), Family::Ipv6) => {
                return Err(Error::invalid(format!(
                    "rule word {w:?} is an IPv4 address, but this rule is for ip6tables (family \"ipv6\"); IPv4 rules go to iptables: use family \"ipv4\" (the default)"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `rule` with the ownership mark as its first match (a comment, so it does not
/// change what the rule matches).
pub fn marked(mark: &str, rule: &[String]) -> Vec<String> {
    let mut v = vec!["-m".to_string(), "comment".into(), "--comment".into(), mark.to_string()];
    v.extend_from_slice(rule);
    v
}

/// Whether a `-S` line (`-A CHAIN words`) carries the ownership mark `mark` (the
/// comment `marked` puts first).
pub fn carries(mark: &str, line: &str) -> bool {
    line.strip_prefix("-A ")
        .and_then(|rest| split_words(rest).ok())
        .is_some_and(|w| w.windows(2).any(|p| p[0] == "--comment" && p[1] == mark))
}

/// A rule's words but the values of its free-text options (`--comment "-j X"`).
fn outside_text(words: &[String]) -> impl Iterator<Item = &str> {
    let mut text = false;
    words.iter().map(String::as_str).filter(move |w| {
        let value = std::mem::replace(&mut text, TEXT_OPTIONS.contains(w));
        !value
    })
}

/// The chain or target a rule's words jump or go to (`-j X`, `--jump X`, `-g X`,
/// `--goto=X`, `-jX`), if any.
pub fn jump_target(words: &[String]) -> Option<&str> {
    let mut it = outside_text(words);
    while let Some(w) = it.next() {
        if let Some(long) = w.strip_prefix("--") {
            match long.split_once('=') {
                Some(("jump" | "goto", t)) => return Some(t),
                None if long == "jump" || long == "goto" => return it.next(),
                _ => {}
            }
        } else if let Some(short) = w.strip_prefix("-j").or_else(|| w.strip_prefix("-g")) {
            return if short.is_empty() { it.next() } else { Some(short) };
        }
    }
    None
}

/// Whether a rule of `table` jumps or goes to one of `chains` (table, chain).
pub fn jumps_into(table: &str, rule: &[String], chains: &[(String, String)]) -> bool {
    jump_target(rule).is_some_and(|to| chains.iter().any(|(t, c)| t == table && c == to))
}

/// The interfaces a rule's words match on (`-i X`, `! -o X`, `--in-interface=X`,
/// `-iX`; a `+` wildcard is kept as written).
pub fn interfaces(words: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut it = outside_text(words);
    while let Some(w) = it.next() {
        let name = match w.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some(("in-interface" | "out-interface", n)) => Some(n),
                None if long == "in-interface" || long == "out-interface" => it.next(),
                _ => None,
            },
            None => match w.strip_prefix("-i").or_else(|| w.strip_prefix("-o")) {
                Some("") => it.next(),
                Some(n) => Some(n),
                None => None,
            },
        };
        out.extend(name);
    }
    out
}

/// The user chains a `-S` listing of a table declares (its `-N` lines).
pub fn user_chains(listing: &[String]) -> impl Iterator<Item = &str> {
    listing.iter().filter_map(|l| l.strip_prefix("-N ")).map(str::trim)
}

/// The policy a `-S` listing gives `chain` (its `-P CHAIN TARGET` line).
pub fn policy_in<'a>(listing: &'a [String], chain: &str) -> Option<&'a str> {
    listing.iter().find_map(|l| l.strip_prefix("-P ")?.strip_prefix(chain)?.strip_prefix(' ')).map(str::trim)
}

/// Whether a `-S` listing of a table declares `chain` (a user chain's `-N` line, or
/// a built-in chain's `-P` line).
pub fn declares(listing: &[String], chain: &str) -> bool {
    listing.iter().any(|l| {
        l.strip_prefix("-N ").or_else(|| l.strip_prefix("-P ")).and_then(|r| r.split_whitespace().next()) == Some(chain)
    })
}

/// The rules of a `-S` listing (its `-A` lines), in order.
pub fn rules(listing: &[String]) -> Vec<&String> {
    listing.iter().filter(|l| l.starts_with("-A ")).collect()
}

/// How many rules a `-S` listing holds.
pub fn count(listing: &[String]) -> usize {
    rules(listing).len()
}

/// The rule a deletion removed, from the `-S` listings of its chain before and
/// after: its position (from 1) and its canonical spelling (the words after the
/// chain, as the kernel holds them).
pub fn removed(before: &[String], after: &[String]) -> Result<(u32, Vec<String>)> {
    let (before, after) = (rules(before), rules(after));
    let idx = (0..before.len()).find(|&i| after.get(i) != Some(&before[i])).unwrap_or(before.len().saturating_sub(1));
    let line = before.get(idx).ok_or_else(|| Error::sys("the chain held no rule to delete", None))?;
    Ok((idx as u32 + 1, split_words(line.splitn(3, ' ').nth(2).unwrap_or_default())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_gives_policies_and_declared_chains() {
        let l: Vec<String> = ["-P INPUT ACCEPT", "-P FORWARD DROP", "-N DOCKER", "-N FORWARD2", "-A FORWARD -j DOCKER"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(policy_in(&l, "FORWARD"), Some("DROP"));
        assert_eq!(policy_in(&l, "INPUT"), Some("ACCEPT"));
        assert_eq!(policy_in(&l, "FORW"), None);
        assert_eq!(policy_in(&l, "DOCKER"), None);
        assert!(declares(&l, "DOCKER") && declares(&l, "FORWARD") && declares(&l, "FORWARD2"));
        assert!(!declares(&l, "DOCK") && !declares(&l, "OUTPUT"));
    }

    fn refused(rule: &str) -> bool {
        parse_rule(rule).is_err()
    }

    #[test]
    fn the_jump_target_is_read_in_every_spelling() {
        let t = |r: &str| jump_target(&split_words(r).unwrap()).map(str::to_string);
        assert_eq!(t("-m comment --comment \"-j X\" -i br0 -j DOCKER"), Some("DOCKER".into()));
        assert_eq!(t("--jump DOCKER-USER"), Some("DOCKER-USER".into()));
        assert_eq!(t("-o br0 --goto=DOCKER"), Some("DOCKER".into()));
        assert_eq!(t("--jump=ACCEPT"), Some("ACCEPT".into()));
        assert_eq!(t("-jDOCKER"), Some("DOCKER".into()));
        assert_eq!(t("-g DOCKER-CT"), Some("DOCKER-CT".into()));
        assert_eq!(t("-p tcp --dport 80"), None);
        assert_eq!(t("-j"), None);
    }

    #[test]
    fn the_interfaces_a_rule_matches_on_are_read_in_every_spelling() {
        let i = |r: &str| interfaces(&split_words(r).unwrap()).into_iter().map(str::to_string).collect::<Vec<_>>();
        assert_eq!(i("! -i br_a -o br_a -j DROP"), ["br_a", "br_a"]);
        assert_eq!(i("--in-interface=eth0 --out-interface veth+ -j ACCEPT"), ["eth0", "veth+"]);
        assert_eq!(i("-obr0 -m comment --comment \"-i x\" -j DOCKER"), ["br0"]);
        assert!(i("-m addrtype --dst-type LOCAL -j DOCKER").is_empty());
    }

    #[test]
    fn ordinary_rules_pass() {
        for r in [
            "-s 10.0.0.0/24 -j MASQUERADE",
            "-p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.2:80",
            "! -i br0 -o br0 -j ACCEPT",
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-m comment --comment \"a b\" -jACCEPT",
            "-m policy --dir in --pol ipsec -j ACCEPT",
            "-ieth0 -4 -j DROP",
            "-m multiport --dports 80,443 -j ACCEPT",
            "-p icmp --icmp-type echo-request -j ACCEPT",
            "-j REJECT --reject-with tcp-reset",
        ] {
            assert!(parse_rule(r).is_ok(), "{r}: {:?}", parse_rule(r));
        }
    }

    #[test]
    fn every_spelling_of_table_chain_command_help_is_refused() {
        for r in [
            "-t nat -j ACCEPT",
            "-tnat -j ACCEPT",
            "--table nat -j ACCEPT",
            "--table=nat -j ACCEPT",
            "--tab nat -j ACCEPT",
            "--t=nat -j ACCEPT",
            "-j ACCEPT -A FORWARD",
            "-j ACCEPT --append FORWARD",
            "-j ACCEPT --app FORWARD",
            "-j ACCEPT -I FORWARD",
            "-j ACCEPT --insert=FORWARD",
            "-j ACCEPT -D FORWARD",
            "-j ACCEPT -R FORWARD 1",
            "-j ACCEPT -N x",
            "-j ACCEPT -X",
            "-j ACCEPT -F",
            "-j ACCEPT -Z",
            "-j ACCEPT -P FORWARD DROP",
            "-j ACCEPT -E a b",
            "-j ACCEPT -L",
            "-j ACCEPT -S",
            "-j ACCEPT --list",
            "-j ACCEPT --list-rules",
            "-j ACCEPT --flush",
            "-j ACCEPT --zero",
            "-j ACCEPT --new-chain x",
            "-j ACCEPT --delete-chain",
            "-j ACCEPT --rename-chain a b",
            "-j ACCEPT --policy DROP",
            "-j ACCEPT --pol DROP",
            "-j ACCEPT -C FORWARD",
            "-j ACCEPT --check",
            "-j ACCEPT -vA FORWARD",
            "-j ACCEPT -nt nat",
            "-j ACCEPT -h",
            "-j ACCEPT --help",
            "-j ACCEPT --he",
            "-j ACCEPT -V",
            "-j ACCEPT --version",
            "-j ACCEPT --vers",
            "-j ACCEPT -M /tmp/x",
            "-j ACCEPT --modprobe=/tmp/x",
            "-j \"ACCEPT\nCOMMIT\"",
            "-j ACCEPT\n-F INPUT",
            "-j 'ACCEPT\0'",
            "-m comment --comment 'a\rb' -j ACCEPT",
        ] {
            assert!(refused(r), "not refused: {r:?}");
        }
        let e = parse_rule("-tnat -j ACCEPT").unwrap_err().to_string();
        assert!(e.contains("\"-tnat\"") && e.contains("-t/--table"), "{e}");
        let e = parse_rule("-j ACCEPT -h").unwrap_err().to_string();
        assert!(e.contains("help"), "{e}");
    }

    #[test]
    fn addresses_of_the_other_family_are_refused() {
        let w = |r: &str| parse_rule(r).unwrap();
        for r in [
            "-s 10.0.0.0/24 -j MASQUERADE",
            "-d 10.0.0.2/255.255.255.255 -j ACCEPT",
            "-p tcp -j DNAT --to-destination 10.0.0.2:80",
            "-m iprange --src-range 10.0.0.2-10.0.0.9 -j DROP",
            "-s 10.0.0.1,fd00::1 -j DROP",
        ] {
            let e = check_family(&w(r), Family::Ipv6).unwrap_err().to_string();
            assert!(e.contains("IPv4 address") && e.contains("\"ipv4\""), "{r}: {e}");
        }
        for r in [
            "-s fd00::/64 -j MASQUERADE",
            "! -d fd00::2 -j ACCEPT",
            "-p tcp -j DNAT --to-destination [fd00::2]:80",
            "-d ::1/128 -j ACCEPT",
        ] {
            let e = check_family(&w(r), Family::Ipv4).unwrap_err().to_string();
            assert!(e.contains("IPv6 address") && e.contains("\"ipv6\""), "{r}: {e}");
            assert!(check_family(&w(r), Family::Ipv6).is_ok(), "{r}");
        }
        for r in [
            "-p tcp --dport 80:90 -j ACCEPT",
            "-m mac --mac-source aa:bb:cc:dd:ee:ff -j DROP",
            "-m comment --comment fd00::1 -j ACCEPT",
            "-m time --timestart 12:30 -j DROP",
            "-i veth0 -j ACCEPT",
        ] {
            for f in Family::ALL {
                assert!(check_family(&w(r), f).is_ok(), "{r} ({f})");
            }
        }
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn removed_finds_position_and_spelling() {
        let before = lines(&[
            "-P FORWARD ACCEPT",
            "-A FORWARD -i a -j ACCEPT",
            "-A FORWARD -m comment --comment \"x y\" -j DROP",
            "-A FORWARD -j DROP",
        ]);
        let after = lines(&["-P FORWARD ACCEPT", "-A FORWARD -i a -j ACCEPT", "-A FORWARD -j DROP"]);
        let (pos, words) = removed(&before, &after).unwrap();
        assert_eq!(pos, 2);
        assert_eq!(words, vec!["-m", "comment", "--comment", "x y", "-j", "DROP"]);
        // The last one (identical rules before it compare equal).
        let (pos, _) = removed(&before, &before[..3]).unwrap();
        assert_eq!(pos, 3);
        assert_eq!(count(&before), 3);
        assert_eq!(
            marked("netscript:t", &lines(&["-j", "DROP"]))[..4],
            lines(&["-m", "comment", "--comment", "netscript:t"])[..]
        );
    }
}
