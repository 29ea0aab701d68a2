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
pattern="($base/orqt-|$base/orq-slurm-)"

leftovers() {
  local dir pid state
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
    state=$(awk '{print $3}' "$dir/stat" 2>/dev/null) || continue
    [[ $state == Z ]] && continue  # exited; only its parent's wait is missing
    if tr '\0' '\n' <"$dir/environ" 2>/dev/null | grep -Eq "^ORQ_HOME=$pattern" ||
       tr '\0' ' ' <"$dir/cmdline" 2>/dev/null | grep -Eq "$pattern"; then
      echo "$pid"
    fi
  done
}

for _ in $(seq 100); do
  left=$(leftovers)
  [[ -z $left ]] && { echo "no process of a test is left (looked under $base)"; exit 0; }
  sleep 0.1
done
echo "processes left behind by the tests (killed now):" >&2
for pid in $left; do
  echo "  $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
  kill -KILL "$pid" 2>/dev/null
done
exit 1
