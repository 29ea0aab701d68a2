#!/usr/bin/env bash
# A soak with a nemesis: `tests/soak.sh [MINUTES] [ORQ]` (default 2 minutes, build/orq).
#
# For MINUTES, a generator submits a steady stream of mixed jobs (echo, sleep, cpu, shell; some
# with retries, some that time out, some that fail once then pass on a retry), each with an
# idempotency key, so a submit whose reply was lost is sent again without making a second job.
# Meanwhile a nemesis picks, every 2 to 5 seconds, one of: kill -9 a worker; SIGSTOP a worker
# for 1 to 4 s; kill -9 the broker and `orq up` again; fill the journal's disk for 2 to 4 s and
# free it; cut the link of the remote worker for 2 to 6 s. Then the nemesis stops, every job is
# gathered, and tests/soak_check.py, which knows nothing of orq's code, reports lost,
# duplicated, wrong and stuck tasks against the generator's ledger. Exit 0 only when all four
# are zero.
#
# The hosts: the broker (with 3 local workers) runs in a network namespace of its own and
# listens on TCP + CURVE on a veth pair to a second namespace, where a remote worker runs with
# its own key; the pair's /30 (198.18.9.0, RFC 2544's benchmark range) is its only address, so
# no traffic leaves the machine. Clients reach the broker over ipc, as on its host.
# $ORQ_HOME is a 64 MiB tmpfs mounted for the run (so the disk can be filled). All this needs
# root, as CI runs it. Everything it starts is stopped at the end, the namespaces removed and the
# tmpfs unmounted.
set -euo pipefail
minutes=${1:-2}
orq=$(realpath "${2:-build/orq}")
here=$(cd "$(dirname "$0")" && pwd)
if [[ $(id -u) -ne 0 ]]; then
  echo "soak: a tmpfs for \$ORQ_HOME and network namespaces need root (CI runs as root);" \
    "this is uid $(id -u)" >&2
  exit 1
fi
command -v ip >/dev/null || { echo "soak: needs iproute2 (ip)" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/orq-soak-XXXXXX")
export ORQ_HOME=$work/home
mkdir -p "$ORQ_HOME" "$work/marks"
mount -t tmpfs -o size=64m,mode=0700 tmpfs "$ORQ_HOME"
ledger=$work/ledger
: >"$ledger"
pids=()
ns_broker=orqsoak-$$-b
ns_worker=orqsoak-$$-w
endpoint=tcp://198.18.9.1:7177
cleanup() {
  touch "$work/stop"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$ORQ_HOME/filler"
  timeout 30 "$orq" down >/dev/null 2>&1 || true
  # Anything left with this home (a broker killed mid-`up`, its workers): killed.
  for p in $(grep -l "ORQ_HOME=$ORQ_HOME" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
    kill -9 "$p" 2>/dev/null || true
  done
  ip netns del "$ns_broker" 2>/dev/null || true
  ip netns del "$ns_worker" 2>/dev/null || true
  umount -l "$ORQ_HOME" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for ns in "$ns_broker" "$ns_worker"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
ip -n "$ns_broker" link add vb type veth peer name vw netns "$ns_worker"
ip -n "$ns_broker" addr add 198.18.9.1/30 dev vb
ip -n "$ns_worker" addr add 198.18.9.2/30 dev vw
ip -n "$ns_broker" link set vb up
ip -n "$ns_worker" link set vw up

up() {
  timeout 60 ip netns exec "$ns_broker" "$orq" up -w 3 -t 2 --listen "$endpoint" >/dev/null 2>&1
}
up
"$orq" access add --worker "$work/remote.access" --endpoint "$endpoint" >/dev/null
# The remote worker, started again whenever it dies (the nemesis kills it too).
remote() {
  while [[ ! -e $work/stop ]]; do
    ip netns exec "$ns_worker" "$orq" worker --access "$work/remote.access" --threads 2 \
      >>"$work/remote.log" 2>&1 || true
    sleep 0.5
  done
}
remote &
pids+=($!)
remote_registered() {
  timeout 10 "$orq" status --json 2>/dev/null | python3 -c \
    'import json,sys; sys.exit(0 if any(w["remote"] for w in json.load(sys.stdin)["workers"]) else 1)'
}
registered=no
for _ in $(seq 300); do
  if remote_registered; then registered=yes; break; fi
  sleep 0.1
done
if [[ $registered != yes ]]; then
  echo "soak: the remote worker did not register within 30 s; its log:" >&2
  tail -5 "$work/remote.log" >&2
  exit 1
fi

# The generator: one job at a time, forever. Each ledger line: KEY KIND EXPECTED, where EXPECTED
# is, per task in order, STATUS=VALUE joined by commas (VALUE: result or stdout, without newline).
generate() {
  local i=0 kind key args expected out code
  while [[ ! -e $work/stop ]]; do
    i=$((i + 1))
    key=soak-$i
    case $((RANDOM % 6)) in
      0) kind=echo; args=(--echo "$i"); expected="ok=$i" ;;
      1) kind=sleep; args=(--sleep 0.$((RANDOM % 5)) --result "$i"); expected="ok=$i" ;;
      2) kind=cpu; args=(--cpu 20); expected="ok=20" ;;
      3) kind=shell; args=(--retries 1 -- sh -c 'echo "$0"' ::: "a$i" "b$i" "c$i")
         expected="ok=a$i,ok=b$i,ok=c$i" ;;
      4) kind=timeout; args=(--timeout 0.3 -- sleep 5); expected="timeout=" ;;
      5) kind=flaky  # fails its first execution, passes its retry
         args=(--retries 2 --retry-backoff 0.1,0.1 -- sh -c \
               "if [ -e $work/marks/$i ]; then echo ok$i; else touch $work/marks/$i; exit 1; fi")
         expected="ok=ok$i" ;;
    esac
    # (stdin /dev/null: a command with no ::: would read a piped stdin as its input source.)
    # Until it is accepted: a broker down or restarting (exit 3) is waited for; a full disk
    # (exit 6) refuses the job, which is then not in the ledger: it was never accepted.
    for attempt in $(seq 100); do
      code=0
      out=$(timeout 60 "$orq" submit --key "$key" "${args[@]}" </dev/null 2>/dev/null) || code=$?
      if [[ $code -eq 0 ]]; then
        echo "$key $kind $expected ${out%%$'\n'*}" >>"$ledger"
        break
      fi
      [[ $code -eq 6 ]] && break
      sleep 0.2
    done
    sleep 0.1
  done
}

worker_pids() {
  timeout 10 "$orq" status --json 2>/dev/null |
    python3 -c 'import json,sys; print(" ".join(str(w["pid"]) for w in json.load(sys.stdin)["workers"]))' \
      2>/dev/null || true
}

nemesis() {
  local w pid
  while :; do
    sleep $((2 + RANDOM % 4))
    read -r -a w <<<"$(worker_pids)"
    pid=${w[RANDOM % (${#w[@]} > 0 ? ${#w[@]} : 1)]:-}
    case $((RANDOM % 5)) in
      0) [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null && echo "nemesis: kill -9 worker $pid" ;;
      1) if [[ -n $pid ]] && kill -STOP "$pid" 2>/dev/null; then
           echo "nemesis: SIGSTOP worker $pid"
           sleep $((1 + RANDOM % 4))
           kill -CONT "$pid" 2>/dev/null || true
         fi ;;
      2) if [[ -s $ORQ_HOME/broker.pid ]]; then
           pid=$(cat "$ORQ_HOME/broker.pid")
           kill -9 "$pid" 2>/dev/null && echo "nemesis: kill -9 broker $pid"
           while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
           up || echo "nemesis: orq up failed" >&2
         fi ;;
      3) echo "nemesis: disk full"
         dd if=/dev/zero of="$ORQ_HOME/filler" bs=1M 2>/dev/null || true
         sleep $((2 + RANDOM % 3))
         rm -f "$ORQ_HOME/filler" ;;
      4) echo "nemesis: the remote worker's link cut"
         ip -n "$ns_worker" link set vw down
         sleep $((2 + RANDOM % 5))
         ip -n "$ns_worker" link set vw up ;;
    esac
  done
}

echo "soak: $minutes minutes in $work, orq $orq"
generate &
generator=$!
nemesis &
nemesis=$!
pids+=($generator $nemesis)
sleep $((minutes * 60))
# The nemesis stops at once; whatever it held is let go (a paused worker, a full disk, a cut
# link).
kill "$nemesis" 2>/dev/null || true
wait "$nemesis" 2>/dev/null || true
rm -f "$ORQ_HOME/filler"
ip -n "$ns_worker" link set vw up
for p in $(grep -l "ORQ_HOME=$ORQ_HOME" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
  kill -CONT "$p" 2>/dev/null || true
done
# The generator finishes the submit it is in (so every job accepted is in the ledger).
touch "$work/stop"
timeout 120 "$orq" status >/dev/null 2>&1 || up
wait "$generator" 2>/dev/null || true
# The broker may have been killed last: bring it back (a no-op when it runs).
timeout 10 "$orq" status >/dev/null 2>&1 || up

# Every accepted job, gathered (up to 3 minutes for the last to finish), and the broker's list.
jobs=$(awk '{print $4}' "$ledger")
echo "soak: $(wc -l <"$ledger") jobs accepted; gathering"
timeout 300 "$orq" gather --json --timeout 180 $jobs >"$work/gathered" 2>"$work/gather.err" || true
timeout 30 "$orq" jobs --json >"$work/jobs" 2>/dev/null || true
python3 "$here/soak_check.py" "$ledger" "$work/gathered" "$work/jobs"
