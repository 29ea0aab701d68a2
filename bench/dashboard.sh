#!/usr/bin/env bash
# What watching orq costs (docs/PERFORMANCE.md, issue 21).
#   1. `orq bench --json noop latency` without a dashboard and with one (`--dashboard`: each
#      broker serves it and a page is open on it, asking its status and jobs every second and
#      following its event stream), alternated RUNS times (default 5); the medians of each.
#   2. A job of 1,000,000 queued tasks (no workers) on a broker with its dashboard: how long the
#      dashboard's answers take (curl's time_total, the median of 5), the job page among them.
#   usage: bench/dashboard.sh [RUNS] [ORQ]   (ORQ: default build/orq, a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
orq=$(realpath "${2:-build/orq}")
out=$(mktemp -d "${TMPDIR:-/tmp}/orq-dashboard-bench-XXXXXX")
export ORQ_HOME=$out/home
trap '"$orq" down >/dev/null 2>&1 || true; rm -rf "$out/home"' EXIT

echo "== orq bench noop latency, without and with a dashboard page open (${runs} pairs)"
for i in $(seq "$runs"); do
  "$orq" bench --json noop latency >>"$out/without.jsonl"
  "$orq" bench --json --dashboard noop latency >>"$out/with.jsonl"
done
python3 - "$out" <<'EOF'
import json, statistics, sys
out = sys.argv[1]
def load(name):
    rows = [json.loads(l) for l in open(f"{out}/{name}.jsonl")]
    return {w: [r for r in rows if r["workload"] == w] for w in ("noop", "latency")}
a, b = load("without"), load("with")
def med(rows, key): return statistics.median(r[key] for r in rows)
print(f"{'':28} {'without':>10} {'with page':>10} {'ratio':>7}")
for w, key, unit in (("noop", "tasks_per_s", "tasks/s"), ("latency", "p50_ms", "p50 ms"),
                     ("latency", "p99_ms", "p99 ms"), ("noop", "broker_peak_rss_mib", "broker MiB")):
    x, y = med(a[w], key), med(b[w], key)
    print(f"{w + ' ' + unit:28} {x:10.3f} {y:10.3f} {y / x:7.3f}")
EOF

echo "== a job of 1,000,000 queued tasks, its dashboard's answers (median of 5, seconds)"
"$orq" up -w 0 --http 127.0.0.1:0 >/dev/null
url=$("$orq" dashboard)
start=$(date +%s%N)
"$orq" submit --array 1-1000000 -- true >/dev/null </dev/null
echo "submitted in $((($(date +%s%N) - start) / 1000000)) ms"
time_of() {  # PATH: the median of 5 answers' time_total
  for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total}\n' "$url$1"; done | sort -n | sed -n 3p
}
for path in "" "api/v1/status" "api/v1/jobs" "api/v1/jobs/j1" \
            "api/v1/jobs/j1/tasks?state=all&from=0&limit=100" \
            "api/v1/jobs/j1/tasks?state=all&from=999900&limit=100" \
            "api/v1/jobs/j1/tasks?state=failed&from=0&limit=100" "metrics"; do
  printf '%-58s %s\n' "/$path" "$(time_of "$path")"
done
"$orq" down >/dev/null
