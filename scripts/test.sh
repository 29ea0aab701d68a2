#!/usr/bin/env bash
# The whole test suite, as CI runs it (about 15 minutes on 2 cores, most of it compiling):
#   1. set-up (scripts/setup.sh) and the format check (scripts/format.sh --check);
#   2. every unit and integration test under AddressSanitizer + UndefinedBehaviorSanitizer, built
#      with warnings as errors (build-asan/; the integration tests start that build's orq);
#   3. the tests of the worker's threads, timers and child processes (process, task runner, worker
#      core) under ThreadSanitizer (build-tsan/);
#   4. the fixed-seed codec fuzz run (scripts/fuzz.sh);
#   5. the release build of orq (static dependencies, as scripts/build.sh makes it) running a job,
#      then two minutes of the soak with a nemesis on it (tests/soak.sh).
# Arguments go to the ASan run's ctest (e.g. -R RunTest). The plain build for the README's first
# command is scripts/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/format.sh --check
jobs=$(nproc)

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS=-O1 -DORQ_WERROR=ON \
  -DORQ_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ctest --output-on-failure -j"$jobs" "$@")

tsan_tests=(process_test task_runner_test worker_core_test)
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE= -DCMAKE_CXX_FLAGS=-O1 -DORQ_WERROR=ON \
  -DORQ_SANITIZE=thread >/dev/null
cmake --build build-tsan -j"$jobs" --target "${tsan_tests[@]}"
for t in "${tsan_tests[@]}"; do
  echo "== $t under ThreadSanitizer"
  timeout 600 "build-tsan/$t" --gtest_brief=1
done

bash scripts/fuzz.sh

# The release build as the README's first command makes it (libzmq, SQLite and libstdc++ linked
# statically), and one job through it.
cmake -S . -B build -DCMAKE_BUILD_TYPE=${ORQ_BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build build -j"$jobs" --target orq
echo "== the release binary runs a job"
home=$(mktemp -d)
out=$(ORQ_HOME=$home timeout 60 build/orq run -w 1 -- echo {} ::: static)
rm -rf "$home"
[[ $out == static ]] || { echo "build/orq run printed '$out', not 'static'" >&2; exit 1; }

# Two minutes of the soak with its nemesis (tests/soak.sh) on that binary.
bash tests/soak.sh 2 build/orq
