#!/usr/bin/env bash
# Runs the broker core's randomized model test (broker/core/model_test.cc) on more seeds than the test
# command does: scripts/model.sh [SEEDS [FIRST]] (default 20000 seeds from 1000). Builds it in
# build/ (as scripts/build.sh configures it); prints the seed and its events when a rule breaks.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-20000}
first=${2:-1000}
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=${ORQ_BUILD_TYPE:-RelWithDebInfo} >/dev/null
cmake --build build -j"$(nproc)" --target model_test
binary=build/model_test
ORQ_MODEL_SEEDS=$seeds ORQ_MODEL_SEED=$first "$binary"
