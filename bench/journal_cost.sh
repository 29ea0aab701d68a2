#!/usr/bin/env bash
# What the durable journal costs: the same workloads with and without it, in one run.
#   usage: bench/journal_cost.sh [RUNS]   (default 5; medians printed)
set -euo pipefail
cd "$(dirname "$0")/.."
orq=build/orq
runs=${1:-5}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orq-bench-XXXXXX")
trap 'ORQ_HOME=$tmp/home $orq down >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
python3 -c "
for i in range(100000): print('{\"kind\":\"echo\",\"value\":%d}' % i)" > "$tmp/echo100k.jsonl"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }

# 1. orq run of 100,000 echo tasks, end to end.
for mode in journal no-journal; do
  flag=(); [[ $mode == no-journal ]] && flag=(--no-journal)
  for _ in $(seq "$runs"); do
    s=$(now); ORQ_HOME=$tmp/home $orq run -w 2 "${flag[@]}" "$tmp/echo100k.jsonl" >/dev/null 2>&1; e=$(now)
    echo "100000 / ($e - $s)" | bc -l
  done | median | xargs printf "run 100k echo, %-10s: %8.0f tasks/s\n" "$mode"
done

# 2. Submits to a running broker: one job of 100,000 tasks, and 200 one-task jobs in a row.
for mode in journal no-journal; do
  flag=(); [[ $mode == no-journal ]] && flag=(--no-journal)
  export ORQ_HOME=$tmp/home-$mode
  mkdir -p "$ORQ_HOME"
  $orq broker -w 0 "${flag[@]}" >/dev/null 2>&1 &
  for _ in $(seq 100); do [[ -S $ORQ_HOME/broker.ipc ]] && break; sleep 0.05; done
  for _ in $(seq "$runs"); do
    s=$(now); $orq submit -f "$tmp/echo100k.jsonl" >/dev/null; e=$(now)
    echo "100000 / ($e - $s)" | bc -l
  done | median | xargs printf "submit 1 job of 100k, %-10s: %8.0f tasks/s accepted\n" "$mode"
  s=$(now); for _ in $(seq 200); do $orq submit --echo 1 >/dev/null; done; e=$(now)
  echo "200 / ($e - $s)" | bc -l | xargs printf "200 submits one by one, %-10s: %8.0f submits/s (each a CLI process)\n" "$mode"
  $orq down >/dev/null 2>&1
done
