//! Rule strings cannot smuggle commands or silently do nothing: every spelling of a
//! table, chain or command option, help / version, `--modprobe` and control
//! characters are refused before anything is journaled (iptables-save before ==
//! after); a chain name iptables would not take is refused; and after an
//! iptables-restore batch, what it was meant to add (or delete) is checked to be
//! there (or gone); an undo that failed so stays pending for a later `down`.

mod common;

use common::*;

/// Rule strings (as Lua source of a string literal) and a word of the error.
const BAD_RULES: &[(&str, &str)] = &[
    (r#""-j ACCEPT\n-F INPUT""#, "control character"),
    (r#""-m comment --comment 'a\nb' -j ACCEPT""#, "control character"),
    (r#""-m comment --comment 'a\0b' -j ACCEPT""#, "control character"),
    (r#""-j ACCEPT -h""#, "-h/--help"),
    (r#""-j ACCEPT --help""#, "-h/--help"),
    (r#""-j ACCEPT -V""#, "-V/--version"),
    (r#""-j ACCEPT --version""#, "-V/--version"),
    (r#""-tnat -j ACCEPT""#, "-t/--table"),
    (r#""-t nat -j ACCEPT""#, "-t/--table"),
    (r#""--table=nat -j ACCEPT""#, "-t/--table"),
    (r#""--tab nat -j ACCEPT""#, "-t/--table"),
    (r#""-j ACCEPT -A INPUT""#, "-A/--append"),
    (r#""-j ACCEPT --app INPUT""#, "-A/--append"),
    (r#""-j ACCEPT -vA INPUT""#, "-A/--append"),
    (r#""-j ACCEPT -I INPUT""#, "-I/--insert"),
    (r#""-j ACCEPT -D INPUT""#, "-D/--delete"),
    (r#""-j ACCEPT -R INPUT 1""#, "-R/--replace"),
    (r#""-j ACCEPT -N x""#, "-N/--new-chain"),
    (r#""-j ACCEPT -X""#, "-X/--delete-chain"),
    (r#""-j ACCEPT -F""#, "-F/--flush"),
    (r#""-j ACCEPT --flush=INPUT""#, "-F/--flush"),
    (r#""-j ACCEPT -Z""#, "-Z/--zero"),
    (r#""-j ACCEPT -P INPUT DROP""#, "-P/--policy"),
    (r#""-j ACCEPT -E a b""#, "-E/--rename-chain"),
    (r#""-j ACCEPT -L""#, "-L/--list"),
    (r#""-j ACCEPT --list""#, "-L/--list"),
    (r#""-j ACCEPT -S""#, "-S/--list-rules"),
    (r#""-j ACCEPT -C INPUT""#, "-C/--check"),
    (r#""-j ACCEPT --modprobe=/bin/true""#, "-M/--modprobe"),
];

/// Every bad rule, through fw.append, fw.insert, fw.delete and inside fw.batch,
/// is refused naming the word, and the firewall is as before (the chain the newline
/// would flush keeps its rule).
#[test]
fn smuggled_options_and_line_breaks_are_refused_and_nothing_changes() {
    let sb = Sandbox::new();
    sb.ok("iptables -A INPUT -s 10.9.9.9/32 -j ACCEPT");
    let before = sb.snapshot();
    let before_rules = sb.ok("iptables-save | grep -v '^#'");
    for (rule, why) in BAD_RULES {
        for call in [
            format!("fw.append('filter', 'FORWARD', {rule})"),
            format!("fw.insert('filter', 'FORWARD', {rule})"),
            format!("fw.delete('filter', 'FORWARD', {rule})"),
            format!(
                "fw.batch(function() fw.append('filter', 'FORWARD', '-j ACCEPT') fw.append('filter', 'FORWARD', {rule}) end)"
            ),
        ] {
            let o = sb.run_lua("bad_rule.lua", &format!("netns.add('r1')\n{call}\n"));
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{call}: {err}");
            assert!(err.contains(why) && err.contains("bad_rule.lua:2:"), "{call}: expected {why:?}:\n{err}");
            assert_same(&before, &sb.snapshot(), &call);
        }
    }
    assert_eq!(before_rules, sb.ok("iptables-save | grep -v '^#'"));
}

#[test]
fn chain_names_iptables_would_not_take_are_refused() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    for (name, why) in [
        ("'a b'", "white space"),
        ("'a\\nb'", "control"),
        ("string.rep('c', 29)", "29 bytes long"),
        ("'-x'", "starts with '-'"),
        ("'!x'", "'!'"),
        ("'a\"b'", "quotes"),
        ("'ACCEPT'", "name of a target"),
        ("'MASQUERADE'", "name of a target"),
        ("''", "empty"),
    ] {
        let o = sb.run_lua("bad_chain.lua", &format!("fw.chain('filter', {name})\n"));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("not a valid chain name") && err.contains(why), "{name}: {err}");
        assert_same(&before, &sb.snapshot(), name);
    }
    // What iptables takes, netscript takes: 28 bytes, shell characters.
    let o = sb.run_lua("good_chain.lua", "fw.chain('filter', string.rep('c', 28))\nfw.chain('filter', '$(x);`y`|z')\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let rules = sb.ok("iptables -S");
    assert!(rules.contains(&format!("-N {}\n", "c".repeat(28))) && rules.contains("-N $(x);`y`|z\n"), "{rules}");
}

/// A fake `iptables-restore` that reads its input, does nothing and exits 0 (as
/// iptables-restore does for a line with `-h`): the batch's post-check reports the
/// rule that is not there, and the run is rolled back to the state before.
#[test]
fn a_batch_that_says_ok_but_did_nothing_is_an_error_naming_the_rule() {
    let sb = Sandbox::new();
    let base = std::path::PathBuf::from(script_file(".keep", ""));
    let dir = base.parent().unwrap().join("fakebin");
    std::fs::create_dir_all(&dir).unwrap();
    let restore = dir.join("iptables-restore");
    std::fs::write(&restore, "#!/bin/sh\ncat >/dev/null\nexit 0\n").unwrap();
    std::fs::set_permissions(&restore, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("PATH={}:$PATH", dir.display());

    let before = sb.snapshot();
    let script = script_file(
        "batch_check.lua",
        "fw.batch(function()\n  fw.append('filter', 'FORWARD', '-s 10.1.0.0/16 -j ACCEPT')\n  fw.append('nat', 'POSTROUTING', '-s 10.1.0.0/16 -j MASQUERADE')\nend)\n",
    );
    let o = sb.sh(&format!("{path} {BIN} --iptables auto {script}"));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("iptables -t filter -A FORWARD -m comment --comment netscript:batch_check -s 10.1.0.0/16 -j ACCEPT: iptables-restore reported success, but the rule is not there"),
        "{err}"
    );
    assert_same(&before, &sb.snapshot(), "after the failed batch");

    // With the real iptables-restore the same batch works.
    let o = sb.sh(&format!("{BIN} --ephemeral {script}"));
    assert!(o.status.success(), "{}", stderr(&o));

    // Rollback's batch is checked too: rules added one by one, then a rollback whose
    // deletions go to the fake: they are reported as not undone (exit 3).
    let script = script_file(
        "rollback_check.lua",
        "fw.append('filter', 'FORWARD', '-s 10.2.0.0/16 -j ACCEPT')\nfw.append('filter', 'FORWARD', '-s 10.3.0.0/16 -j ACCEPT')\nerror('stop')\n",
    );
    // Firewall changes batch themselves, so the additions go through iptables-restore
    // too: this fake passes additions on to the real one and swallows deletions.
    let real = sb.ok("command -v iptables-restore").trim().to_string();
    let fake2 = base.parent().unwrap().join("fakebin-del");
    std::fs::create_dir_all(&fake2).unwrap();
    std::fs::write(
        fake2.join("iptables-restore"),
        format!("#!/bin/sh\nin=$(cat)\ncase \"$in\" in *\"-D \"*) exit 0;; esac\nprintf '%s\\n' \"$in\" | exec {real} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(fake2.join("iptables-restore"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let o = sb.sh(&format!("PATH={}:$PATH {BIN} {script}", fake2.display()));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("could not undo `iptables -t filter -D FORWARD -m comment --comment netscript:rollback_check -s 10.3.0.0/16 -j ACCEPT`: ")
            && err.contains("but the rule is still there"),
        "{err}"
    );
    // The report is true: both rules are still there, and the count says so (it
    // used to say "undid 2 changes").
    assert!(err.contains("rolled back: undid 0 of 2 changes; 2 could not be undone (below)"), "{err}");
    let rules = sb.ok("iptables -S FORWARD");
    assert!(rules.contains("10.2.0.0/16") && rules.contains("10.3.0.0/16"), "{rules}");
    // And the undos that failed are still pending: `down`, with the real
    // iptables-restore, finishes the job (they used to be marked undone all the same,
    // and down had nothing left to do).
    let d = sb.netscript(&["down", "rollback_check"]);
    assert!(d.status.success(), "{}", stderr(&d));
    assert!(stderr(&d).contains("undid 2 changes"), "{}", stderr(&d));
    assert_same(&before, &sb.snapshot(), "after the second down");
}

/// The run records the iptables it found in its journal, and `ls`, `show` and `down`
/// use it: they do not detect the flavour again (no `*-save` listings of both
/// variants, no `--version` probes). The commands are watched through logging
/// wrappers first on PATH.
#[test]
fn down_ls_and_show_use_the_firewall_tool_the_run_recorded() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let dir = format!("/tmp/netscript-fwtool-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    let log = format!("{dir}/log");
    for name in ["iptables", "iptables-nft", "iptables-legacy", "iptables-nft-save", "iptables-legacy-save"] {
        let w = format!("{dir}/{name}");
        std::fs::write(&w, format!("#!/bin/sh\necho \"{name} $*\" >> {log}\nexec /usr/sbin/{name} \"$@\"\n")).unwrap();
        std::process::Command::new("chmod").args(["755", &w]).status().unwrap();
    }
    let path = format!("{dir}:{}", std::env::var("PATH").unwrap_or_default());
    let script = script_file("fwtool.lua", r#"fw.append("filter", "INPUT", "-s 10.9.9.9/32 -j DROP")"#);
    let o = sb.spawn_netscript(&[&script], &[("PATH", &path)]).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let journal = sb.ok("cat /run/netscript/fwtool/journal.jsonl");
    assert!(journal.contains(r#""firewall":"iptables""#), "{journal}");
    let run_log = std::fs::read_to_string(&log).unwrap_or_default();
    // Detection looks the commands up on PATH and lists the rules of both variants.
    assert!(run_log.contains("iptables-nft-save"), "the run detects the flavour: {run_log}");
    for args in [&["ls"][..], &["show", "fwtool"]] {
        std::fs::remove_file(&log).unwrap();
        let o = sb.spawn_netscript(args, &[("PATH", &path)]).wait_with_output().unwrap();
        assert!(o.status.success() && stdout(&o).contains("fwtool"), "{}", stderr(&o));
        let looked = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(looked.lines().any(|l| l.starts_with("iptables ")), "{args:?} used the wrappers: {looked}");
        assert!(!looked.contains("--version") && !looked.contains("-save"), "{args:?} detected again: {looked}");
    }
    std::fs::remove_file(&log).unwrap();
    let d = sb.spawn_netscript(&["down", "fwtool"], &[("PATH", &path)]).wait_with_output().unwrap();
    assert!(d.status.success(), "{}", stderr(&d));
    let down_log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(down_log.lines().any(|l| l.starts_with("iptables ")), "down used the wrappers: {down_log}");
    assert!(!down_log.contains("--version") && !down_log.contains("-save"), "down detected again: {down_log}");
    assert_same(&before, &sb.snapshot(), "after down");
}

/// `ls` looks a topology's rules up with two listings per namespace and family (its
/// `iptables-save`, and the rules as `iptables-save` spells them once restored into
/// an empty namespace), not with one `iptables -C` each (1,000 rules took 5 s that
/// way): the same answers, the tool's own spellings found (`-s 10.1.0.1` saved as
/// `/32`, `--dport` with `-m tcp`, a quoted comment, a rule in a user chain, IPv6),
/// and a rule deleted behind the topology's back named. With the listings switched
/// off, the wrapper below logs an `iptables -C` per rule (checked). `down` then
/// counts a rule whose jump's chain was deleted by hand, and a chain deleted by
/// hand, as undone: before, it failed on both ("Chain 'EMPTY' does not exist", and
/// iptables-nft calling a missing chain "incompatible"; checked).
#[test]
fn ls_looks_the_rules_up_all_at_once_with_the_same_answers() {
    let sb = Sandbox::new();
    let dir = format!("/tmp/netscript-lsrules-{}", std::process::id());
    std::fs::create_dir_all(&dir).unwrap();
    let log = format!("{dir}/log");
    for name in ["iptables", "ip6tables"] {
        let w = format!("{dir}/{name}");
        std::fs::write(&w, format!("#!/bin/sh\necho \"{name} $*\" >> {log}\nexec /usr/sbin/{name} \"$@\"\n")).unwrap();
        std::process::Command::new("chmod").args(["755", &w]).status().unwrap();
    }
    let path = format!("{dir}:{}", std::env::var("PATH").unwrap_or_default());
    let script = script_file(
        "lsrules.lua",
        r#"fw.chain("filter", "LAB")
fw.append("filter", "LAB", "-s 10.1.0.1 -j ACCEPT")
fw.append("filter", "FORWARD", "-p tcp --dport 80 -j LAB")
fw.append("filter", "INPUT", "-m comment --comment \"it's here\" -j ACCEPT")
fw.append("nat", "POSTROUTING", "-s 10.1.0.0/24 ! -o lo -j MASQUERADE")
fw.append("filter", "FORWARD", "-s fd00::1 -j DROP", { family = "ipv6" })
fw.append("filter", "FORWARD", "-p tcp --dport 22 -j ACCEPT", { family = "ipv6" })
fw.chain("filter", "EMPTY")
fw.append("filter", "FORWARD", "-s 10.3.0.0/24 -j EMPTY")
fw.policy("filter", "FORWARD", "DROP")
"#,
    );
    assert!(sb.netscript(&[&script]).status.success());
    let drift = |sb: &Sandbox| -> Vec<String> {
        let o = sb.spawn_netscript(&["ls", "--json"], &[("PATH", &path)]).wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        json[0]["drift"].as_array().unwrap().iter().map(|d| d["command"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(drift(&sb), Vec::<String>::new(), "every rule is found as iptables spells it");
    // The two chains and the policy are read from one listing of the table.
    let listings = || -> Vec<String> {
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        calls.lines().filter(|l| l.split(' ').any(|w| w == "-S")).map(str::to_string).collect()
    };
    assert_eq!(listings(), vec!["iptables -t filter -S --wait".to_string()]);
    sb.ok(&format!("iptables -P FORWARD ACCEPT && : > {log}"));
    assert_eq!(drift(&sb), vec!["iptables -t filter -P FORWARD DROP".to_string()], "the policy changed by hand");
    assert_eq!(listings().len(), 1, "{:?}", listings());
    sb.ok("iptables -P FORWARD DROP");
    // Behind its back: the rule in LAB and the IPv6 rule go, someone else's comes.
    sb.ok("iptables -F LAB && ip6tables -F FORWARD && iptables -A FORWARD -s 9.9.9.9 -j DROP");
    let now = drift(&sb);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.iter().any(|c| c.starts_with("iptables -t filter -A LAB") && c.contains("-s 10.1.0.1 ")), "{now:?}");
    assert!(
        now.iter().any(|c| c.starts_with("ip6tables -t filter -A FORWARD") && c.contains("-s fd00::1 ")),
        "{now:?}"
    );
    assert!(
        now.iter().any(|c| c.starts_with("ip6tables -t filter -A FORWARD") && c.contains("--dport 22 ")),
        "{now:?}"
    );
    // A chain deleted by hand with the rule that jumps to it, then one that holds
    // none of the rules: the chain and the jump named each time (and LAB's rule).
    // The rules' own chains are made in the empty namespace, so the first is still
    // two listings; it refuses the jump to the second, and the rules are then looked
    // up one by one, with the same answers.
    let alone = || {
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        calls.lines().any(|l| l.split(' ').any(|w| w == "-C"))
    };
    for (jump, chain, drifts, one_by_one) in
        [("-p tcp --dport 80 -j LAB", "LAB", 5, false), ("-s 10.3.0.0/24 -j EMPTY", "EMPTY", 7, true)]
    {
        sb.ok(&format!("iptables -D FORWARD -m comment --comment netscript:lsrules {jump} && iptables -X {chain}"));
        let now = drift(&sb);
        assert_eq!(now.len(), drifts, "{now:?}");
        assert!(now.contains(&format!("iptables -t filter -N {chain}")), "{now:?}");
        assert!(now.iter().any(|c| c.ends_with(jump)), "{now:?}");
        assert_eq!(alone(), one_by_one, "{chain}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let o = sb.netscript(&["down", "lsrules"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A topology whose name holds quotes (its rules' ownership comment then does too)
/// and rule words with quotes and spaces: each change alone (a rule, its `exists`
/// check, a deletion, `down`'s undo) passes every word to iptables as one argument,
/// as the batches do. Before, the single changes went through a string that
/// iptables' crate split again, and refused quotes: such a topology could not add a
/// rule alone, and its `down` failed on every lone undo (checked).
#[test]
fn quotes_in_a_topology_name_and_in_rule_words_reach_iptables_as_they_are() {
    let sb = Sandbox::new();
    let before = sb.snapshot();
    let script = script_file(
        "quoted-rules.lua",
        r#"fw.append("filter", "FORWARD", [[-s 10.9.9.9 -m comment --comment "it's \"here\" now" -j ACCEPT]])
assert(#fw.rules("filter") > 0)
fw.append("filter", "INPUT", "-s 10.8.8.8 -j ACCEPT")
fw.delete("filter", "INPUT", "-s 10.8.8.8 -j ACCEPT")
fw.policy("filter", "OUTPUT", "DROP")
"#,
    );
    let o = sb.netscript(&["--name", "bob's \"lab\"", &script]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rules = sb.ok("iptables -S FORWARD");
    assert!(
        rules.contains(r#"-s 10.9.9.9/32 -m comment --comment "netscript:bob\'s \"lab\"" -m comment --comment "it\'s \"here\" now" -j ACCEPT"#),
        "{rules}"
    );
    assert!(!sb.ok("iptables -S INPUT").contains("10.8.8.8"));
    let o = sb.netscript(&["down", "bob's \"lab\""]);
    assert!(o.status.success(), "{}", stderr(&o));
    sb.assert_unchanged(&before, "after down");
}

/// A chain the topology made, into which someone else then put a rule: `down`
/// leaves the chain and that rule in place and says so (its own rules in it are
/// undone first). Before, it flushed the chain by name, the other rule with it
/// (checked).
#[test]
fn down_leaves_a_chain_that_holds_someone_elses_rule() {
    let sb = Sandbox::new();
    let script = script_file(
        "shared-chain.lua",
        r#"fw.chain("filter", "LAB")
fw.append("filter", "LAB", "-s 10.1.0.1 -j ACCEPT")
"#,
    );
    assert!(sb.netscript(&["--name", "chain-lab", &script]).status.success());
    sb.ok("iptables -A LAB -s 10.2.0.2 -j DROP");
    let o = sb.netscript(&["down", "chain-lab"]);
    let err = stderr(&o);
    assert!(
        err.contains("chain LAB in table filter of the host namespace holds a rule that is not this topology's (`-A LAB -s 10.2.0.2/32 -j DROP`): the chain is left in place (once it is empty: iptables -t filter -X LAB)"),
        "{err}"
    );
    let rules = sb.ok("iptables -S LAB");
    assert_eq!(rules, "-N LAB\n-A LAB -s 10.2.0.2/32 -j DROP\n", "{err}");
}
