#!/usr/bin/env bash
# How long a killed worker's tasks take to be leased again: kill -9 the worker holding a task and
# read when its next attempt started (gather --json "started"). Also for a paused (SIGSTOP)
# worker, which is found only by missed heartbeats.
#   usage: bench/release_time.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
orq=$PWD/build/orq
runs=${1:-5}
export ORQ_HOME=$(mktemp -d "${TMPDIR:-/tmp}/orq-bench-XXXXXX")
trap '$orq down >/dev/null 2>&1 || true; rm -rf "$ORQ_HOME"' EXIT
$orq up -w 2 -t 1 >/dev/null
holder() {  # pid of the worker running a task
  for _ in $(seq 200); do
    pid=$($orq status --json | python3 -c "
import json,sys
s=json.load(sys.stdin)
print(next((w['pid'] for w in s['workers'] if w['running']>0), ''))")
    [[ -n $pid ]] && { echo "$pid"; return; }
  done
}
for signal in KILL STOP; do
  for _ in $(seq "$runs"); do
    job=$($orq submit --sleep 0.5 --result x)
    pid=$(holder)
    t0=$(date +%s.%N)
    kill -$signal "$pid"
    started=$($orq gather --json "$job" | python3 -c "import json,sys; print(json.load(sys.stdin)['started'])")
    [[ $signal == STOP ]] && kill -CONT "$pid"
    echo "$started - $t0" | bc -l
  done | sort -n | awk -v s=$signal '{a[NR]=$1} END {printf "SIG%s: re-leased after %.3f s (median of %d; min %.3f, max %.3f)\n", s, a[int((NR+1)/2)], NR, a[1], a[NR]}'
done
