#!/bin/bash
# Benchmark: netscript builds and tears down the baseline topology
# (../shared/bench/baseline, benches/topology.lua) next to the stock tools, in the
# same run, and prints the medians side by side.
#
#   sudo benches/run.sh ["10 50 200"] [reps]
#
# Everything runs inside a throwaway network + mount namespace with its own /run:
# the host's network is not touched. Timings are noisy on small machines: compare
# the columns of one run, not runs of different days.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
NS_LIST=${1:-"10 50 200"}
REPS=${2:-3}

if [[ -z ${NETSCRIPT_BENCH_INNER:-} ]]; then
  (cd "$top" && cargo build --release --quiet)
  exec unshare --net --mount --propagation private env NETSCRIPT_BENCH_INNER=1 \
    bash -c 'mount -t tmpfs tmpfs /run && mkdir -p /run/netns && ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi

BASE=${NETSCRIPT_BASELINE:-$top/../shared/bench/baseline}
[[ -d $BASE ]] || { echo "baseline scripts not found at $BASE (set NETSCRIPT_BASELINE)"; exit 2; }
BIN=$top/target/release/netscript
export BASELINE_OUT=$(mktemp -d /tmp/netscript-bench.XXXXXX)
trap 'rm -rf "$BASELINE_OUT"' EXIT

echo "stock tools (baseline):"
bash "$BASE/bench.sh" "$NS_LIST" "a b" "$REPS" >/dev/null
echo "netscript:"
ms() { local a=${1/./} b=${2/./}; echo $(( (10#$b - 10#$a) / 1000 )); }
for N in $NS_LIST; do
  for ((r = 1; r <= REPS; r++)); do
    ip netns add pb_host && ip -n pb_host link set lo up
    s=$EPOCHREALTIME
    nsenter --net=/run/netns/pb_host "$BIN" --name bench "$here/topology.lua" "$N" 2>/dev/null
    b=$(ms "$s" "$EPOCHREALTIME")
    if [[ $r == 1 && $N == "${NS_LIST%% *}" ]]; then
      # The baseline's own checks; the one difference allowed is netscript's ownership
      # mark on routes (proto 78).
      fails=$(bash "$BASE/verify.sh" "$N" ipt 2>&1 | grep -E '^ +FAIL ' | grep -v 'proto 78' || true)
      [[ -z $fails ]] || { echo "netscript's topology failed the baseline's verify.sh (N=$N):"; echo "$fails"; exit 1; }
    fi
    s=$EPOCHREALTIME
    nsenter --net=/run/netns/pb_host "$BIN" down bench 2>/dev/null
    t=$(ms "$s" "$EPOCHREALTIME")
    echo "$N,netscript,$r,$(bc <<<"scale=3;$b/1000"),$(bc <<<"scale=3;$t/1000")" >> "$BASELINE_OUT/results.csv"
    ip netns del pb_host
    sleep 0.5
  done
done

# Medians per N and variant: build, and teardown until the kernel has removed everything.
python3 - "$BASELINE_OUT/results.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
data = {}
for r in rows:
    if not r or r[0] == "N":
        continue
    n, v = int(r[0]), r[1]
    build = float(r[3])
    teardown = float(r[5]) if v != "netscript" else float(r[4])
    data.setdefault((n, v), []).append((build, teardown))
names = {"a": "article (one process per step)", "b": "batch (ip -batch, iptables-restore)", "netscript": "netscript"}
print(f"{'N':>5}  {'variant':<38} {'build s':>8} {'ms/ctr':>7} {'teardown s':>11}")
for (n, v) in sorted(data, key=lambda k: (k[0], ["a", "b", "netscript"].index(k[1]))):
    b = statistics.median(x[0] for x in data[(n, v)])
    t = statistics.median(x[1] for x in data[(n, v)])
    print(f"{n:>5}  {names[v]:<38} {b:>8.3f} {1000*b/n:>7.1f} {t:>11.3f}")
PY
