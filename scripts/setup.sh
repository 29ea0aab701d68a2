#!/usr/bin/env bash
# Installs the Debian packages orq needs; does nothing when all are present. Two tiers:
#   scripts/setup.sh          building and running orq (scripts/build.sh): g++ cmake make,
#                             libzmq3-dev cppzmq-dev libboost-dev libboost-filesystem-dev
#                             libcli11-dev nlohmann-json3-dev libsqlite3-dev libssl-dev (the
#                             dashboard's TLS), libgtest-dev (the unit tests build with orq),
#                             pybind11-dev, python3-dev and python3-cloudpickle (the Python
#                             module: functions sent by value)
#   scripts/setup.sh --tests  that, and what the test command (scripts/test.sh) uses: git (the
#          format check lists the sources with it), procps (pgrep), iproute2 (network-namespace
#          hosts), Slurm and munge (workers started by a real single-node Slurm), python3 (a free
#          port for Slurm), clang and its runtimes (the codec fuzzer), lld (links the sanitizer
#          builds, four times faster than GNU ld), clang-format (the format check), parallel (GNU
#          parallel: orq's replacement strings are tested against its --dry-run), and for the
#          dashboard's real-component tests: chromium and nodejs (a browser driven by
#          puppeteer-core, which this script installs from the npm registry into
#          tests/browser/node_modules at the version its package-lock.json pins), prometheus
#          (promtool and a server), curl and openssl (requests and a test certificate),
#          python3-pytest (the Python module's tests)
# Must work as root on a fresh Debian 12 machine (uses sudo when not root and it is there).
set -euo pipefail
tests=0
if [[ ${1:-} == --tests ]]; then
  tests=1
elif [[ $# -gt 0 ]]; then
  echo "orq setup: unknown argument '$1' (scripts/setup.sh [--tests])" >&2
  exit 2
fi
packages=(g++ cmake make libzmq3-dev cppzmq-dev libboost-dev libboost-filesystem-dev
          libcli11-dev nlohmann-json3-dev libsqlite3-dev libssl-dev libgtest-dev pybind11-dev
          python3-dev python3-cloudpickle)
if ((tests)); then
  packages+=(git procps iproute2 slurmctld slurmd slurm-client munge python3 clang
             libclang-rt-14-dev lld clang-format parallel chromium prometheus curl openssl nodejs
             python3-pytest)
  # npm: Debian's package, unless the nodejs installed already brings its own.
  command -v npm >/dev/null || packages+=(npm)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
browser_test() {  # puppeteer-core for tests/browser, as its lock file pins it (--tests only)
  ((tests)) || return 0
  local dir
  dir="$(dirname "$0")/../tests/browser"
  [[ -d $dir/node_modules/puppeteer-core ]] && return 0
  echo "orq setup: installing puppeteer-core (npm ci in tests/browser)" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
}
if ((${#missing[@]} == 0)); then
  browser_test
  exit 0
fi
echo "orq setup: installing ${#missing[@]} Debian packages (with what they need; some minutes" \
  "on a fresh machine): ${missing[*]}" >&2
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
# The tests start their own Slurm and munge daemons; the packages' own services must not start
# (and fail without a configuration). Where no policy says so, say it for this install only.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
echo "orq setup: apt-get update" >&2
"${sudo[@]}" apt-get update -qq
echo "orq setup: apt-get install (downloading, then unpacking)" >&2
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "orq setup: packages installed" >&2
browser_test
