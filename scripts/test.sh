#!/usr/bin/env bash
# The test suite.
#
#   scripts/test.sh            everything, as CI runs it (the README's test command; about 14
#                              minutes on 2 cores from a fresh clone, most of it compiling):
#     1. set-up (scripts/setup.sh) and the format check (scripts/format.sh --check);
#     2. the build with AddressSanitizer + UndefinedBehaviorSanitizer at -O1, warnings as errors
#        (build-asan/);
#     3. then two lanes side by side:
#        a. every unit and integration test of that build (ctest; the integration tests start
#           that build's orq, make network namespaces and start a private Slurm);
#        b. the tests of the worker's threads, timers and child processes under ThreadSanitizer
#           (build-tsan/); the fixed-seed codec fuzz run (scripts/fuzz.sh); the release build of
#           orq as the README's first command makes it, a job through it, and two minutes of the
#           soak with a nemesis on it (tests/soak.sh). Its output goes to build-asan/lane-b.log,
#           printed at the end.
#   scripts/test.sh --quick    the developer's loop (under 3 minutes after a first build): the
#                              format check, an incremental build-asan/, and the tests labelled
#                              neither slow nor hosts (ctest -LE 'slow|hosts').
#
# Other arguments go to the ASan build's ctest (e.g. -R RunTest, or -L unit). Every temporary
# directory the tests make is under a $TMPDIR of this run's own, removed at the end; the last
# integration test (tests/leftovers.sh) fails if any process a test started outlived it.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [[ ${1:-} == --quick ]]; then
  quick=1
  shift
fi
jobs=$(nproc)
start=$SECONDS
stage() { printf '== %s (at %d s)\n' "$1" $((SECONDS - start)); }

stage "set-up and format"
bash scripts/setup.sh
bash scripts/format.sh --check

# Each build folder is configured once with the flags written here; configuring again changes
# nothing, so an unchanged file is never recompiled.
configure() {  # configure DIR CMAKE-ARGS...
  local dir=$1
  shift
  mkdir -p "$dir"
  cmake -S . -B "$dir" "$@" >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log" >&2; return 1; }
}
sanitized=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g" -DORQ_WERROR=ON)

stage "build-asan (AddressSanitizer + UndefinedBehaviorSanitizer, -O1)"
configure build-asan "${sanitized[@]}" -DORQ_SANITIZE=address,undefined
cmake --build build-asan -j"$jobs"

run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/orq-test-XXXXXX")
trap 'rm -rf "$run_tmp"' EXIT
# ctest under this run's $TMPDIR; integration tests mostly wait for processes, so two per core.
asan_tests() {
  (cd build-asan && TMPDIR=$run_tmp ctest --output-on-failure -j$((2 * jobs)) "$@")
}

if ((quick)); then
  stage "unit and fast integration tests"
  asan_tests -LE 'slow|hosts' "$@"
  stage "passed"
  exit 0
fi

# Lane b: everything that does not need build-asan's tests, one step after another.
lane_b() {
  local tsan_tests=(process_test task_runner_test worker_core_test)
  stage "build-tsan (ThreadSanitizer, -O1)"
  configure build-tsan "${sanitized[@]}" -DORQ_SANITIZE=thread
  cmake --build build-tsan -j"$jobs" --target "${tsan_tests[@]}"
  for t in "${tsan_tests[@]}"; do
    stage "$t under ThreadSanitizer"
    TMPDIR=$run_tmp timeout 600 "build-tsan/$t" --gtest_brief=1
  done

  stage "codec fuzzer"
  bash scripts/fuzz.sh

  # The release build as the README's first command makes it (libzmq, SQLite and libstdc++
  # linked statically), and one job through it.
  stage "release build, and a job through it"
  bash scripts/build.sh
  local home out
  home=$(mktemp -d "$run_tmp/orq-release-XXXXXX")
  out=$(ORQ_HOME=$home timeout 60 build/orq run -w 1 -- echo {} ::: static)
  [[ $out == static ]] || { echo "build/orq run printed '$out', not 'static'" >&2; return 1; }

  stage "two minutes of the soak with its nemesis"
  TMPDIR=$run_tmp bash tests/soak.sh 2 build/orq
  stage "lane b passed"
}

lane_log=build-asan/lane-b.log
stage "lane a (the ASan tests) and lane b (TSan, fuzz, release, soak; log in $lane_log)"
lane_b >"$lane_log" 2>&1 &
lane_pid=$!
a=0
stage "the ASan build's unit and integration tests"
asan_tests "$@" || a=$?
stage "lane a done (exit $a); waiting for lane b"
b=0
wait "$lane_pid" || b=$?
echo "---- lane b (exit $b):"
cat "$lane_log"
echo "----"
if ((a != 0 || b != 0)); then
  stage "FAILED: lane a exit $a, lane b exit $b"
  exit 1
fi
stage "passed"
