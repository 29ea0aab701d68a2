#!/usr/bin/env bash
# The whole test suite: set-up, the format check, the build (warnings are errors), every unit and
# integration test under CTest, and the fixed-seed codec fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/format.sh --check
cmake -S . -B build -DCMAKE_BUILD_TYPE=${ORQ_BUILD_TYPE:-RelWithDebInfo} -DORQ_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
bash scripts/fuzz.sh
(cd build && ctest --output-on-failure -j"$(nproc)" "$@")
