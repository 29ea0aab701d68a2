#!/usr/bin/env bash
# Builds the codec fuzzer with clang's libFuzzer and runs it.
#   scripts/fuzz.sh            a fixed-seed run of 300,000 inputs: the same every time (the test command)
#   scripts/fuzz.sh SECONDS    a random-seed run for that long, to look for new bugs
set -euo pipefail
cd "$(dirname "$0")/.."
cxx=$(command -v clang++ || command -v clang++-14 || true)
if [[ -z $cxx ]]; then
  echo "fuzz: clang++ not found (scripts/setup.sh --tests installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi
# Its own build folder (CMake, ORQ_FUZZ: the fuzzer target only), configured once.
if [[ ! -f build-fuzz/CMakeCache.txt ]]; then
  cmake -S . -B build-fuzz -DORQ_FUZZ=ON -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG= >build-fuzz.log 2>&1 || { cat build-fuzz.log >&2; exit 1; }
  rm -f build-fuzz.log
fi
cmake --build build-fuzz --target codec_fuzz >/dev/null
mkdir -p build-fuzz/corpus
if [[ $# -eq 0 ]]; then
  mode=(-seed=1 -runs=300000)   # deterministic: a pass here is a pass on any machine
  corpus=$(mktemp -d)           # from nothing, so earlier runs do not change this one
else
  mode=(-max_total_time="$1")
  corpus=build-fuzz/corpus
fi
build-fuzz/codec_fuzz "${mode[@]}" -rss_limit_mb=1024 -max_len=4096 -artifact_prefix=build-fuzz/ \
  "$corpus" 2>build-fuzz/log.txt || { tail -40 build-fuzz/log.txt; exit 1; }
[[ $# -eq 0 ]] && rm -rf "$corpus"
echo "fuzz: the codec fuzzer ran without a crash ($(grep -o 'Done [0-9]* runs in [0-9]* second(s)' build-fuzz/log.txt))"
