#!/usr/bin/env bash
# The last integration test (CTest runs it after every test that needs the fixture `processes`):
# no process a test started may outlive the tests. Every test directory lives under $TMPDIR
# (tests/temp_dir.h; /tmp when unset): a test's $ORQ_HOME is $TMPDIR/orqt-*, a private Slurm's
# state $TMPDIR/orq-slurm-*. A process whose environment has such an ORQ_HOME, or whose command
# line names such a directory, is a leftover: it gets 10 s to end on its own (a test's clean-up
# may still be under way), then it is killed and this test fails, naming each one.
set -uo pipefail
base=${TMPDIR:-/tmp}
base=${base%/}
dirs="($base/orqt-|$base/orq-slurm-)"

leftovers() {  # the pids, one a line
  local file pid state
  # (environ is NUL-separated: -z reads each variable as a line. Without it the whole file was
  # one line and ^ matched only a first variable, so an `orq up` broker, whose command line names
  # no directory and whose ORQ_HOME comes last, was never seen.)
  for file in $({ grep -lsazE "^ORQ_HOME=$dirs" /proc/[0-9]*/environ
                  grep -lsaE "$dirs" /proc/[0-9]*/cmdline; } 2>/dev/null | sort -u); do
    pid=${file#/proc/}
    pid=${pid%%/*}
    [[ $pid == "$$" ]] && continue
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || continue
    [[ $state == Z ]] && continue  # exited; only its parent's wait is missing
    echo "$pid"
  done | sort -u
}

for _ in $(seq 50); do
  left=$(leftovers)
  [[ -z $left ]] && { echo "no process of a test is left (looked under $base)"; exit 0; }
  sleep 0.2
done
echo "processes left behind by the tests (killed now):" >&2
for pid in $left; do
  echo "  $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
  kill -KILL "$pid" 2>/dev/null
done
exit 1
