#!/usr/bin/env bash
# The test suite.
#
#   scripts/test.sh            everything, as CI runs it (the README's test command; 17 to 20
#                              minutes on 2 cores from a fresh clone). After the set-up
#                              (scripts/setup.sh --tests) and the format check (scripts/format.sh
#                              --check), three lanes run side by side:
#     asan     the build with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/), then
#              every unit and integration test of it (ctest; the integration tests start that
#              build's orq, make network namespaces and start a private Slurm);
#     tsan     the tests of the worker's threads, timers and child processes under
#              ThreadSanitizer (build-tsan/), then the fixed-seed codec fuzz run (scripts/fuzz.sh);
#     release  orq built as the README's first command builds it (build/), a job through it,
#              two minutes of the soak with a nemesis on it (tests/soak.sh), then the Python
#              module's tests and the installed C++ package's (tests/programs.sh).
#            The swarm test (210 remote workers, five broker restarts, a flood:
#            tests/swarm_test.cc) is not in it yet: it passes alone from the release build
#            (`cmake --build build --target integration_test && build/tests/integration_test
#            --gtest_filter='SwarmTest.*'`, about a minute), but beside the ASan lane's tests the
#            two cores carry neither; it needs a slot of its own in this script.
#            The asan lane prints as it goes; the other two write build-logs/LANE.log, printed
#            at the end. The tsan lane runs at a lower priority (nice): it fills the time the
#            other two leave while they run their tests and the soak.
#   scripts/test.sh --quick    the developer's loop (under 3 minutes after a first build): the
#                              format check, an incremental build-asan/, and the tests labelled
#                              neither slow nor hosts (ctest -LE 'slow|hosts').
#
# Other arguments go to the ASan build's ctest (e.g. -R RunTest, or -L unit). The sanitizer builds
# compile at -O0 -g1 (line tables: sanitizer reports name file and line), with warnings as
# errors. Every temporary directory the tests make is under a $TMPDIR of this run's own, removed
# at the end; the last integration test (tests/leftovers.sh) fails if any process a test started
# outlived it.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [[ ${1:-} == --quick ]]; then
  quick=1
  shift
fi
jobs=$(nproc)
start=$SECONDS
stage() { printf '== %s (at %d s)\n' "$*" $((SECONDS - start)); }

stage "set-up and format"
bash scripts/setup.sh --tests
bash scripts/format.sh --check

# Each build folder is configured once with the flags written here; configuring it again changes
# nothing, so an unchanged file is never compiled again.
configure() {  # configure DIR CMAKE-ARGS...
  local dir=$1
  shift
  mkdir -p "$dir"
  cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log" >&2; return 1; }
}
sanitized=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O0 -g1" -DORQ_WERROR=ON)

# Every lane runs as a background job, each a process group of its own (job control), so that an
# interrupt can stop each lane and all it started, and never signals whoever ran this script.
set -m
declare -A lane_pid
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/orq-test-XXXXXX")
trap 'rm -rf "$run_tmp"' EXIT
# The tests' $HOME too: the tools they run write there (GNU parallel ~/.parallel, chromium
# ~/.config/chromium), and nothing of a run is left outside its $TMPDIR.
run_home=$run_tmp/home
mkdir -p "$run_home"
# Interrupted (Ctrl-C, a CI deadline): TERM to every lane's process group, then KILL to what the
# tests started in sessions of their own (brokers, a private Slurm): every such process names
# $run_tmp in its environment or command line.
interrupted() {
  trap '' INT TERM
  stage "interrupted: stopping every lane"
  local pid file
  for pid in "${lane_pid[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  sleep 1
  for file in $({ grep -lsa "$run_tmp" /proc/[0-9]*/environ /proc/[0-9]*/cmdline; } 2>/dev/null); do
    pid=${file#/proc/}
    pid=${pid%%/*}
    if [[ $pid != "$$" ]]; then kill -KILL "$pid" 2>/dev/null; fi
  done
  for pid in "${lane_pid[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  exit 130
}
trap interrupted INT TERM

asan_lane() {
  stage "build-asan (AddressSanitizer + UndefinedBehaviorSanitizer)"
  configure build-asan "${sanitized[@]}" -DORQ_SANITIZE=address,undefined
  cmake --build build-asan -j"$jobs"
  # Integration tests mostly wait for processes: two at a time per core.
  stage "the ASan build's tests"
  (cd build-asan && TMPDIR=$run_tmp HOME=$run_home ctest --output-on-failure -j$((2 * jobs)) "$@")
}

if ((quick)); then
  asan_lane -LE 'slow|hosts' "$@" &
  lane_pid[asan]=$!
  wait "${lane_pid[asan]}"
  stage "passed"
  exit 0
fi

tsan_lane() {
  local tsan_tests=(process_test task_runner_test worker_core_test) t
  stage "build-tsan (ThreadSanitizer)"
  configure build-tsan "${sanitized[@]}" -DORQ_SANITIZE=thread
  cmake --build build-tsan -j"$jobs" --target "${tsan_tests[@]}"
  for t in "${tsan_tests[@]}"; do
    stage "$t under ThreadSanitizer"
    TMPDIR=$run_tmp HOME=$run_home timeout 600 "build-tsan/$t" --gtest_brief=1
  done
  stage "the codec fuzzer"
  TMPDIR=$run_tmp HOME=$run_home bash scripts/fuzz.sh
  stage "tsan lane passed"
}

release_lane() {
  # The release build as the README's first command makes it (libzmq, SQLite and libstdc++
  # linked statically), and one job through it.
  stage "the release build (scripts/build.sh)"
  bash scripts/build.sh
  local home out
  home=$(mktemp -d "$run_tmp/orq-release-XXXXXX")
  out=$(ORQ_HOME=$home timeout 60 build/orq run -w 1 -- echo {} ::: static)
  [[ $out == static ]] || { echo "build/orq run printed '$out', not 'static'" >&2; return 1; }
  stage "two minutes of the soak with its nemesis"
  TMPDIR=$run_tmp HOME=$run_home bash tests/soak.sh 2 build/orq
  stage "orq from programs: the Python module's tests, the installed C++ package"
  TMPDIR=$run_tmp HOME=$run_home bash tests/programs.sh build
  stage "release lane passed"
}

mkdir -p build-logs
# The release lane's soak and the asan lane's tests are long and light: both builds go first, and
# the tsan lane (all compiling and fuzzing) fills the time they leave.
for lane in tsan release; do
  stage "the $lane lane starts (build-logs/$lane.log)"
  (if [[ $lane == tsan ]]; then renice -n 10 -p $BASHPID >/dev/null; fi; "${lane}_lane") \
    >"build-logs/$lane.log" 2>&1 &
  lane_pid[$lane]=$!
done
asan_lane "$@" &
lane_pid[asan]=$!
# (Each lane is a job of its own: a function called in a `||` list would run without errexit.)
failed=()
for lane in asan tsan release; do
  [[ $lane == asan ]] || stage "waiting for the $lane lane"
  wait "${lane_pid[$lane]}" || failed+=("$lane")
  if [[ $lane != asan ]]; then
    echo "---- build-logs/$lane.log:"
    cat "build-logs/$lane.log"
    echo "----"
  fi
done
if ((${#failed[@]})); then
  stage "FAILED: ${failed[*]}"
  exit 1
fi
stage "passed"
