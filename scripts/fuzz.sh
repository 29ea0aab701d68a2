#!/usr/bin/env bash
# Builds the codec fuzzer with clang's libFuzzer (when clang is present) and runs it for a while.
#   usage: scripts/fuzz.sh [SECONDS]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
cxx=$(command -v clang++ || command -v clang++-14 || true)
if [[ -z $cxx ]]; then
  echo "fuzz: clang++ not found; skipping the codec fuzzer"
  exit 0
fi
mkdir -p build/fuzz
"$cxx" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I. common/codec_fuzz.cc common/codec.cc common/task_spec.cc common/ids.cc -o build/fuzz/codec_fuzz
mkdir -p build/fuzz/corpus
build/fuzz/codec_fuzz -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=4096 \
  -artifact_prefix=build/fuzz/ build/fuzz/corpus 2>build/fuzz/log.txt || { tail -40 build/fuzz/log.txt; exit 1; }
echo "fuzz: the codec fuzzer ran ${seconds} s without a crash ($(grep -o 'Done [0-9]* runs' build/fuzz/log.txt))"
