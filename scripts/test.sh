#!/usr/bin/env bash
# The whole test suite: set-up, build, then every unit and integration test under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/fuzz.sh
cd build
ctest --output-on-failure -j"$(nproc)" "$@"
