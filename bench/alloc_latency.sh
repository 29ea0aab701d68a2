#!/usr/bin/env bash
# How long a task waits for a fresh allocation (issue 22): on a private single-node Slurm
# (tests/slurm/cluster.sh; needs root and Slurm, as the test suite does), a broker with no worker
# and an allocation queue; one shell task `true` is submitted and gathered: the time from the
# submit to its result, through sbatch, Slurm's scheduler, the worker's start and registration.
# Each run waits until the allocation has ended (its worker idle for 2 s), so every run starts
# from no worker. Prints each run and the median.
#   usage: bench/alloc_latency.sh [RUNS] [ORQ]   (ORQ: default build/orq, a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
orq=$(realpath "${2:-build/orq}")
out=$(mktemp -d "${TMPDIR:-/tmp}/orq-alloc-bench-XXXXXX")
export ORQ_HOME=$out/home SLURM_CONF=$out/slurm/slurm.conf
cleanup() {
  "$orq" down >/dev/null 2>&1 || true
  bash tests/slurm/cluster.sh stop "$out/slurm" >/dev/null 2>&1 || true
  rm -rf "$out"
}
trap cleanup EXIT
bash tests/slurm/cluster.sh start "$out/slurm" >"$out/cluster.log" 2>&1
"$orq" up -w 0 --listen tcp://127.0.0.1:0 >/dev/null
"$orq" alloc add slurm --time-limit 2m --max-workers 1 --idle-timeout 2s >/dev/null
ended() {  # every allocation of the queue has ended
  "$orq" alloc list --json | python3 -c '
import json, sys
q = json.loads(sys.stdin.read())
sys.exit(0 if all(a["state"] == "ended" for a in q["allocations"]) else 1)'
}
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  job=$("$orq" submit -- true)
  "$orq" gather "$job" >/dev/null
  end=$(date +%s.%N)
  python3 -c "print(f'run $i: first result after {$end - $start:.2f} s')" | tee -a "$out/runs"
  for _ in $(seq 300); do ended && break; sleep 0.1; done
done
python3 - "$out/runs" <<'EOF'
import statistics, sys
times = [float(line.split()[-2]) for line in open(sys.argv[1])]
print(f"median of {len(times)}: {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})")
EOF
