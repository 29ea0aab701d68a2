#!/usr/bin/env bash
# Set-up and build: installs missing Debian packages, configures build/ (RelWithDebInfo, once:
# configuring again changes nothing) and builds orq and its man page and completions, and the
# client library (build/client/liborq.so) and the Python module (build/python/orq: import it
# with PYTHONPATH=build/python), nothing else. `cmake --build build` builds the tests too;
# `cmake --install build` installs orq, the library with its CMake package, and the module.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "orq build: configuring build/" >&2
cmake -S . -B build -DCMAKE_BUILD_TYPE=${ORQ_BUILD_TYPE:-RelWithDebInfo} >/dev/null
echo "orq build: compiling (the first time about 5 minutes on 2 cores; then what changed)" >&2
cmake --build build -j"$(nproc)" --target orq orq_docs orq_client orq_python
