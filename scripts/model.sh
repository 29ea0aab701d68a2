#!/usr/bin/env bash
# Runs the broker core's randomized model test (broker/model_test.cc) on more seeds than the test
# command does: scripts/model.sh [SEEDS [FIRST]] (default 20000 seeds from 1000). Needs a build
# (scripts/build.sh); prints the seed and its events when a rule breaks.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-20000}
first=${2:-1000}
binary=build/model_test
[[ -x $binary ]] || { echo "model.sh: $binary is missing: run scripts/build.sh first" >&2; exit 2; }
ORQ_MODEL_SEEDS=$seeds ORQ_MODEL_SEED=$first "$binary"
