#!/usr/bin/env bash
# orq's benchmarks side by side with Dask, Celery, GNU parallel and xargs, in one run on this
# machine, with the ratios. Medians of RUNS runs of `orq bench` (default 3).
#   usage: bench/run.sh [RUNS]
# The comparison systems come from Debian (../shared/bench/anchors/run_anchors.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
[[ -x build/orq ]] || bash scripts/build.sh >/dev/null
anchors=${ORQ_ANCHORS:-../shared/bench/anchors/run_anchors.sh}
out=$(mktemp -d "${TMPDIR:-/tmp}/orq-bench-XXXXXX")
trap 'rm -rf "$out/home"' EXIT  # the raw figures stay in $out
export ORQ_HOME=$out/home

echo "== orq bench, ${runs} runs (2 workers, journal on) =="
for i in $(seq "$runs"); do build/orq bench --json >> "$out/orq.jsonl"; done
echo "== anchors, same machine, same run =="
if [[ -x $anchors || -f $anchors ]]; then
  bash "$anchors" all 2>&1 | tee "$out/anchors.txt"
else
  echo "(no anchors script at $anchors)" | tee "$out/anchors.txt"
fi
echo "== xargs and GNU parallel on 2,000 true, right after orq's shell workload =="
seq 2000 > "$out/n2000"
for i in $(seq "$runs"); do
  s=$(date +%s.%N); xargs -P2 -n1 true < "$out/n2000"; e=$(date +%s.%N)
  echo "$e - $s" | bc -l >> "$out/xargs.txt"
done

echo "raw figures: $out"
python3 - "$out" <<'PY'
import json, re, statistics, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/orq.jsonl")]
by = {}
for r in rows:
    by.setdefault(r["workload"], []).append(r)
def med(w, key):
    vals = [r[key] for r in by.get(w, []) if key in r]
    return statistics.median(vals) if vals else float("nan")
anchors = open(f"{out}/anchors.txt").read()
def anchor(pattern):
    m = re.search(pattern, anchors)
    return float(m.group(1)) if m else float("nan")
dask_noop = anchor(r"dask noop .*rate=([0-9.]+)/s")
celery_noop = anchor(r"celery noop .*rate=([0-9.]+)/s")
dask_sleep = anchor(r"dask sleep .*submit\+gather=([0-9.]+)s")
parallel_sleep = anchor(r"gnu-parallel sleep.*?: ([0-9.]+) s")
xargs = statistics.median(float(x) for x in open(f"{out}/xargs.txt"))
dask_cpu = anchor(r"dask cpu .*submit\+gather=([0-9.]+)s")
print()
print("| workload | target | orq (median) | comparison, same run | verdict |")
print("| --- | --- | --- | --- | --- |")
noop = med("noop", "tasks_per_s")
print(f"| noop: 100,000 echo end to end | >= 100,000 tasks/s, >= 100x Dask | {noop:,.0f} tasks/s | Dask {dask_noop:,.0f}/s ({noop/dask_noop:,.0f}x), Celery {celery_noop:,.0f}/s ({noop/celery_noop:,.0f}x) | {'met' if noop >= 1e5 and noop >= 100*dask_noop else 'MISSED'} |")
sleep = med("sleep", "wall_s")
print(f"| 10,000 sleep 1 s | <= 1.3 s | {sleep:.2f} s | Dask 1,000 sleeps {dask_sleep:.2f} s, GNU parallel 1,000 sleeps {parallel_sleep:.2f} s | {'met' if sleep <= 1.3 else 'MISSED'} |")
shell = med("shell", "wall_s")
print(f"| 2,000 shell true | <= xargs -P2 | {shell:.2f} s | xargs -P2 {xargs:.2f} s | {'met' if shell <= xargs else 'MISSED'} |")
cpu = med("cpu", "wall_s")
print(f"| 400 cpu 10 ms, -t 1 | <= 2.1 s | {cpu:.2f} s | Dask {dask_cpu:.2f} s | {'met' if cpu <= 2.1 else 'MISSED'} |")
cold = med("cold", "wall_s")
print(f"| cold start, orq run -w 1 of one echo | <= 100 ms | {cold*1000:.0f} ms | | {'met' if cold <= 0.1 else 'MISSED'} |")
lat50, lat99 = med("latency", "p50_ms"), med("latency", "p99_ms")
print(f"| latency, one task submit to result | (report) | p50 {lat50:.2f} ms, p99 {lat99:.2f} ms | | |")
rss = med("million", "broker_peak_rss_mib")
note = by.get("million", [{}])[0].get("note", "")
print(f"| 1,000,000 tasks queued in one job | broker <= 512 MiB, rate at 1M within 20 % of 10k | {rss:.0f} MiB; {note} | | {'met' if rss <= 512 else 'MISSED'} |")
if "tcp" in by:
    tcp = med("tcp", "tasks_per_s")
    ratio = statistics.median(float(re.search(r"is ([0-9]+) %", r["note"]).group(1)) for r in by["tcp"])
    print(f"| noop over TCP + CURVE, 2 workers and the client | >= 50 % of ipc | {tcp:,.0f} tasks/s | ipc in the same runs: {ratio:.0f} % | {'met' if ratio >= 50 else 'MISSED'} |")
PY
