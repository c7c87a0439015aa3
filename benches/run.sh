#!/bin/bash
# Benchmark: netscript builds and tears down the baseline topology
# (../shared/bench/baseline, benches/topology.lua) next to the stock tools, in the
# same run, and prints the medians and the ratios side by side.
#
#   sudo benches/run.sh ["50 200 500 1000"] [reps] [plan N]
#   sudo BENCH_SETTLE=3 benches/run.sh ...   # each teardown on a quiet kernel
#   sudo BENCH_CONTROL=800 benches/run.sh ...  # and the control (below), 800 µs
#   sudo BENCH_VARIANTS="floor plain" benches/run.sh "50 1000" 30
#        # only these variants (of: article batch floor control plain hinted), so that
#        # many repetitions fit in the time: the growth's interval narrows with them
#   sudo BENCH_CSV=/tmp/runs.csv benches/run.sh ...  # and keep every run's figures
#
# Variants: the stock batch (the baseline's scripts: `ip -batch`, one
# `iptables-restore`; the article-style shell script too with BENCH_ARTICLE=1,
# slow), the kernel floor (benches/floor.rs,
# the example bench-floor: the same topology from one process with raw netlink, one
# request at a time, no marks, no journal, no reads; the firewall by one
# iptables-restore), netscript on the plain script (one call per step, no hint) and
# on the same script inside `fw.batch` (hinted). Build is the command's time;
# teardown is until the kernel has removed every veth, for all variants (the
# baseline's "settled" time; the table gives the median and the range). Every variant
# runs in the same loop with the same waits (BENCH_SETTLE, below), each build once
# the kernel has finished dismantling the namespaces of the run before. CPU is the
# build's (user + system, its child processes included: `times`), for every variant;
# peak RSS is netscript's own (it prints it with its phases: no wrapper runs around
# netscript that does not run around the floor). netscript's own cost is its build time minus the floor's of
# the same N (medians; and paired, each repetition against its own floor run); "own
# cost growth" is that per container at the largest N over the smallest. Its own CPU
# is the same difference in CPU time: the work netscript adds, without the time it
# waits while the kernel's own work (which grows with N) has the CPUs.
# The phases (NETSCRIPT_PHASES)
# are the plain script's medians, ms per container: namespaces, links, addresses and
# routes, firewall, journal (the back end's / journal's share of the script's time),
# rest (Lua and validation reads).
# The control (BENCH_CONTROL=U, off by default): the floor computing U µs of CPU
# after each container, a program that adds a fixed amount of work and nothing else.
# Its own cost (build minus the floor's) and that cost's growth with N are printed as
# netscript's are: what the machine does to a fixed amount of added work at large N
# (the kernel's background work takes the CPUs; see docs/performance.md).
# Everything runs inside a throwaway network + mount namespace with its own /run:
# the host's network is not touched. Timings are noisy on small shared machines:
# compare the columns of one run, not runs of different days.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
NS_LIST=${1:-"50 200 500 1000"}
REPS=${2:-3}
PLAN_N=${3:-500}
[[ -z ${BENCH_CONTROL:-} || $BENCH_CONTROL =~ ^[0-9]+$ ]] || { echo "BENCH_CONTROL=$BENCH_CONTROL: not a number of µs"; exit 2; }
# The variants run, in this order in each repetition: BENCH_VARIANTS, or the stock
# batch (the article too with BENCH_ARTICLE), the floor, the control with
# BENCH_CONTROL, netscript plain and hinted.
LOOP= SHOWN=
for v in ${BENCH_VARIANTS:-${BENCH_ARTICLE:+article} batch floor ${BENCH_CONTROL:+control} plain hinted}; do
  case $v in
    article) LOOP+=" a" ;;
    batch) LOOP+=" b" ;;
    floor | plain | hinted) LOOP+=" $v" ;;
    control) [[ -n ${BENCH_CONTROL:-} ]] || { echo "BENCH_VARIANTS names control: set BENCH_CONTROL (µs)"; exit 2; }
      LOOP+=" control" ;;
    *) echo "BENCH_VARIANTS: no variant \"$v\" (article batch floor control plain hinted)"; exit 2 ;;
  esac
  SHOWN+=" $v"
done

if [[ -z ${NETSCRIPT_BENCH_INNER:-} ]]; then
  (cd "$top" && cargo build --release --quiet && cargo build --release --quiet --example bench-floor)
  exec unshare --net --mount --propagation private env NETSCRIPT_BENCH_INNER=1 \
    bash -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/netns && ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi

# The baseline sits next to the repository (../shared); from a git worktree, next to
# the main checkout.
BASE=${NETSCRIPT_BASELINE:-$top/../shared/bench/baseline}
if [[ ! -d $BASE ]]; then
  common=$(git -C "$top" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
  [[ -n $common ]] && BASE=$(dirname "$common")/../shared/bench/baseline
fi
[[ -d $BASE ]] || { echo "baseline scripts not found at $BASE (set NETSCRIPT_BASELINE)"; exit 2; }
BIN=$top/target/release/netscript
FLOOR=$top/target/release/examples/bench-floor
export BASELINE_OUT=$(mktemp -d /tmp/netscript-bench.XXXXXX)
# BENCH_CSV=FILE keeps every build and teardown, one line each: N, variant,
# repetition, build s, teardown s, until the veths are gone s, user and system CPU s,
# peak RSS KB.
trap '[[ -n ${BENCH_CSV:-} && -f $BASELINE_OUT/results.csv ]] && cp "$BASELINE_OUT/results.csv" "$BENCH_CSV"; rm -rf "$BASELINE_OUT"' EXIT
CONTROL=${BENCH_CONTROL:-}

echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(iptables --version)"
echo "variants:$SHOWN, interleaved (each repetition runs every N, each with every variant);"
echo "the kernel gets ${BENCH_SETTLE:-0.5} s before each build and each teardown (BENCH_SETTLE):"
ms() { local a=${1/./} b=${2/./}; echo $(( (10#$b - 10#$a) / 1000 )); }
# The CPU time (user,system in s) the children of this shell used between two outputs
# of `times` (its second line: the children's, to the ms).
cpu_used() {
  awk 'FNR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); c[i] += (NR == FNR ? -1 : 1) * (60 * t[1] + t[2]) } }
       END { printf "%.3f,%.3f", c[1], c[2] }' "$1" "$2"
}
IN_HOST="nsenter --net=/run/netns/pb_host"
# Before each build and each teardown the kernel is given SETTLE seconds (the stock
# baseline's own driver, bench.sh, waits 0.5 s): after a build it still runs IPv6
# duplicate address detection and multicast reports on every new port for a second
# or two, and a teardown that starts before that is over competes with it: more so
# after a fast build (a slow build has waited for its first ports already). With
# BENCH_SETTLE=3 every teardown starts on a quiet kernel.
SETTLE=${BENCH_SETTLE:-0.5}
# Before each build, the kernel's cleanup of the namespaces deleted before (by the last
# teardown, and pb_host) is waited for: it runs on one kernel worker for a while after
# the veths are gone (0.3 s at N=500, 0.5 s at N=1000, measured) and holds the locks a
# build needs. A probe namespace with a veth end outside is deleted; the kernel deletes
# namespaces in order, so once that end is gone the cleanups before it are over.
kernel_quiet() {
  ip netns add pb_probe && ip link add pb_probe_h type veth peer name p netns pb_probe && ip netns del pb_probe
  while [[ "$(</proc/net/dev)" == *pb_probe_h* ]]; do sleep 0.002; done
}
# The stock variants run the baseline's scripts with the same timing as the others
# (as its bench.sh does: build, verify once, wait, teardown, wait for the veths).
stock_cmd() { # variant phase -> the baseline's script and its argument
  case $1.$2 in
    a.build) echo "build_article.sh iptables" ;; a.down) echo "teardown_article.sh iptables" ;;
    b.build) echo "build_batch.sh ipt" ;; b.down) echo "teardown_batch.sh ipt" ;;
  esac
}
# Each repetition builds every N with every variant, so that the machine's drift over
# a long run reaches the small and the large N alike (the growth compares them).
first_n=${NS_LIST%% *}
for ((r = 1; r <= REPS; r++)); do
  for N in $NS_LIST; do
    for V in $LOOP; do
      kernel_quiet
      ip netns add pb_host && ip -n pb_host link set lo up
      sleep "$SETTLE"
      rss=
      times > "$BASELINE_OUT/cpu0"
      s=$EPOCHREALTIME
      case $V in
        a | b)
          read -r script arg < <(stock_cmd "$V" build)
          $IN_HOST bash "$BASE/$script" "$N" "$arg" 2>/dev/null ||
            { echo "the stock build failed (N=$N, $V, repetition $r)"; exit 1; } ;;
        floor) $IN_HOST "$FLOOR" "$N" ;;
        control) BENCH_FLOOR_WORK_US="$CONTROL" $IN_HOST "$FLOOR" "$N" ;;
        *)
          # As the floor runs: nsenter and the program, nothing else around it (until
          # 2026-12-03 `env` and `/usr/bin/time` ran around netscript too, 5.5 ms
          # of two more programs that counted as its own cost).
          NETSCRIPT_PHASES=1 $IN_HOST "$BIN" --name bench "$here/topology.lua" "$N" $V 2>"$BASELINE_OUT/err" ||
            { echo "netscript failed (N=$N, $V, repetition $r):"; cat "$BASELINE_OUT/err"; exit 1; } ;;
      esac
      b=$(ms "$s" "$EPOCHREALTIME")
      times > "$BASELINE_OUT/cpu1"
      cpu=$(cpu_used "$BASELINE_OUT/cpu0" "$BASELINE_OUT/cpu1")
      if [[ $V == plain || $V == hinted ]]; then
        rss=$(sed -n 's/^PHASES .* rss_kb=\([0-9]*\).*/\1/p' "$BASELINE_OUT/err")
        # PHASES k=ms ...: one line per run, for the table of phases.
        sed -n "s/^PHASES /$N $V /p" "$BASELINE_OUT/err" >> "$BASELINE_OUT/phases"
      fi
      if [[ $r == 1 && $N == "$first_n" ]]; then
        # The baseline's own checks; the one difference allowed is netscript's ownership
        # mark on routes (proto 78).
        fails=$(bash "$BASE/verify.sh" "$N" ipt 2>&1 | grep -E '^ +FAIL ' | grep -v 'proto 78' || true)
        [[ -z $fails ]] || { echo "the $V topology failed the baseline's verify.sh (N=$N):"; echo "$fails"; exit 1; }
      fi
      sleep "$SETTLE"
      s=$EPOCHREALTIME
      case $V in
        a | b)
          read -r script arg < <(stock_cmd "$V" down)
          $IN_HOST bash "$BASE/$script" "$N" "$arg" 2>/dev/null ||
            { echo "the stock teardown failed (N=$N, $V, repetition $r)"; exit 1; } ;;
        floor | control) $IN_HOST "$FLOOR" down "$N" ;;
        *)
          $IN_HOST "$BIN" down bench 2>"$BASELINE_OUT/err" ||
            { echo "netscript down failed (N=$N, $V, repetition $r):"; cat "$BASELINE_OUT/err"; exit 1; } ;;
      esac
      t=$(ms "$s" "$EPOCHREALTIME")
      $IN_HOST bash -c 'while [[ "$(</proc/net/dev)" == *vh_* ]]; do sleep 0.005; done'
      ts=$(ms "$s" "$EPOCHREALTIME")
      echo "$N,$V,$r,$(bc <<<"scale=3;$b/1000"),$(bc <<<"scale=3;$t/1000"),$(bc <<<"scale=3;$ts/1000"),$cpu,${rss:-}" >> "$BASELINE_OUT/results.csv"
      ip netns del pb_host
      sleep 0.5
    done
  done
done

# plan: no root needed, touches nothing; the median of REPS.
plan=()
for ((r = 1; r <= REPS; r++)); do
  s=$EPOCHREALTIME
  "$BIN" plan "$here/topology.lua" "$PLAN_N" >/dev/null 2>&1
  plan+=("$(ms "$s" "$EPOCHREALTIME")")
done

# Medians per N and variant; the ratios to the stock batch of the same N.
python3 - "$BASELINE_OUT/results.csv" "$BASELINE_OUT/phases" "$PLAN_N" "${plan[@]}" <<'PY'
import csv, math, os, random, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
data = {}
for r in rows:
    if not r or r[0] == "N":
        continue
    n, v = int(r[0]), r[1]
    rss = int(r[8]) / 1024 if len(r) > 8 and r[8] else None
    data.setdefault((n, v), []).append((float(r[3]), float(r[5]), rss, float(r[6]), int(r[2]), float(r[7])))
names = {"a": "article (one process per step)", "b": "stock batch (ip -batch, iptables-restore)",
         "floor": "kernel floor (raw netlink, no marks)",
         "control": f"control: floor + {os.environ.get('BENCH_CONTROL')} us CPU/ctr",
         "plain": "netscript, plain script", "hinted": "netscript, with fw.batch"}
order = ["a", "b", "floor", "control", "plain", "hinted"]
med = lambda xs: statistics.median(xs)
build = lambda n, v: med([x[0] for x in data[(n, v)]])
cpu = lambda n, v: med([x[3] + x[5] for x in data[(n, v)]]) / n * 1000  # user + system, ms/ctr
print(f"{'N':>5}  {'variant':<42} {'build s':>8} {'ms/ctr':>7} {'x batch':>8} {'x floor':>8} "
      f"{'teardown s':>11} {'range':>11} {'x batch':>8} {'CPU ms/ctr':>10} {'RSS MB':>7}")
for (n, v) in sorted(data, key=lambda k: (k[0], order.index(k[1]))):
    b = build(n, v)
    ts = [x[1] for x in data[(n, v)]]
    t = med(ts)
    tr = f"{min(ts):.3f}-{max(ts):.3f}"
    ref = data.get((n, "b"))
    rb = f"{b / build(n, 'b'):>8.2f}" if ref and v != "b" else f"{'':>8}"
    rf = f"{b / build(n, 'floor'):>8.2f}" if (n, "floor") in data and v in ("control", "plain", "hinted") else f"{'':>8}"
    rt = f"{t / med([x[1] for x in ref]):>8.2f}" if ref and v != "b" else f"{'':>8}"
    rss = f"{max(x[2] for x in data[(n, v)]):>7.1f}" if data[(n, v)][0][2] is not None else f"{'':>7}"
    print(f"{n:>5}  {names[v]:<42} {b:>8.3f} {1000*b/n:>7.2f} {rb} {rf} {t:>11.3f} {tr:>11} {rt} "
          f"{cpu(n, v):>10.2f} {rss}")
def diffs(n, v):  # build - the floor's build of the same repetition, ms/ctr, per repetition
    fl = {x[4]: x[0] for x in data[(n, "floor")]}
    return [(x[0] - fl[x[4]]) / n * 1000 for x in data[(n, v)] if x[4] in fl]
paired = lambda n, v: med(diffs(n, v))
def interval(d0, d1):  # 90% bootstrap interval of med(d1) / med(d0), repetitions resampled
    rnd, rs = random.Random(1), []
    for _ in range(2000):
        m0, m1 = med(rnd.choices(d0, k=len(d0))), med(rnd.choices(d1, k=len(d1)))
        rs.append(m1 / m0 if m0 > 0 else math.inf)
    rs.sort()
    return rs[len(rs) // 20], rs[len(rs) * 19 // 20]
user = lambda n, v: med([x[3] for x in data[(n, v)]]) / n * 1000
ns = sorted({n for (n, _) in data})
if len(ns) > 1:
    lo, hi = ns[0], ns[-1]
    for v in ("b", "floor", "control", "plain", "hinted"):
        if (lo, v) in data and (hi, v) in data:
            c0, c1 = build(lo, v) / lo, build(hi, v) / hi
            print(f"per-container cost, {names[v]}: N={hi} is {c1 / c0:.2f} x N={lo}")
    for v in ("control", "plain", "hinted"):
        if all(k in data for k in [(lo, v), (hi, v), (lo, "floor"), (hi, "floor")]):
            o0 = (build(lo, v) - build(lo, "floor")) / lo * 1000
            o1 = (build(hi, v) - build(hi, "floor")) / hi * 1000
            g = f"{o1 / o0:.2f} x" if o0 > 0 else "n/a"
            print(f"own cost (build - floor), {names[v]}: {o0:.2f} ms/ctr at N={lo}, "
                  f"{o1:.2f} at N={hi}: growth {g}")
            # The same, each repetition against the floor run just before it (the
            # machine's speed drifts between repetitions), and netscript's own CPU in
            # user space (its code: Lua, journal, requests built and read).
            p0, p1 = paired(lo, v), paired(hi, v)
            g = f"{p1 / p0:.2f} x" if p0 > 0 else "n/a"
            print(f"  paired by repetition: {p0:.2f} and {p1:.2f} ms/ctr, growth {g}; its user CPU: "
                  f"{user(lo, v):.2f} and {user(hi, v):.2f} ms/ctr")
            # How sure that growth is: the run's repetitions resampled. The floor's own
            # build varies by +-20% from run to run at N=1000 on a small shared machine,
            # as much as netscript's whole own cost: few repetitions decide nothing.
            # (The target compares N=1000 with N=50.)
            a, z = interval(diffs(lo, v), diffs(hi, v))
            verdict = "met" if z <= 1.3 else "missed" if a > 1.3 else "not decided by this run (more repetitions)"
            target = f": the target (<= 1.3 x) {verdict}" if (lo, hi) == (50, 1000) else ""
            print(f"  90% interval of the paired growth: {a:.2f} to {z:.2f} x over {len(diffs(hi, v))} "
                  f"repetitions{target}")
            # The CPU it adds to the floor's (user + system): the work netscript does
            # for a container, without the waits for the CPUs the kernel's background
            # work takes (which is what stretches the build time at large N).
            c0, c1 = cpu(lo, v) - cpu(lo, "floor"), cpu(hi, v) - cpu(hi, "floor")
            g = f"{c1 / c0:.2f} x" if c0 > 0 else "n/a"
            print(f"  its own CPU (user + system beyond the floor's): {c0:.2f} and {c1:.2f} ms/ctr, growth {g}")
# Phases of the plain script: medians, ms per container.
if os.path.exists(sys.argv[2]):
    ph = {}
    for line in open(sys.argv[2]):
        w = line.split()
        if len(w) < 3 or w[1] != "plain":
            continue
        ph.setdefault(int(w[0]), []).append(dict((k, float(x)) for k, x in (p.split("=") for p in w[2:])))
    cols = ["total", "netns", "links", "addrs+routes", "firewall", "other", "journal", "rest", "open", "finish"]
    print("phases, netscript plain script (medians, ms per container; rest = Lua and validation reads):")
    print(f"{'N':>5}  " + " ".join(f"{c:>12}" for c in cols))
    for n in sorted(ph):
        print(f"{n:>5}  " + " ".join(f"{med([r.get(c, 0) for r in ph[n]]) / n:>12.3f}" for c in cols))
plan = [int(x) for x in sys.argv[4:]]
print(f"plan of N={sys.argv[3]}: {statistics.median(plan) / 1000:.3f} s (median of {len(plan)})")
PY
