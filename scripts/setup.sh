#!/usr/bin/env bash
# Installs the Debian packages orq builds and tests with; does nothing when all are present.
# Must work as root on a fresh Debian 12 machine (uses sudo when not root and it is there).
#   build: g++ cmake ... libgtest-dev, pybind11-dev and python3-dev (the Python module)
#   tests: git (the format check lists the sources with it), procps (pgrep), iproute2
#          (network-namespace hosts), Slurm and munge (workers started by a real single-node
#          Slurm), python3 (a free port for Slurm), clang and its runtimes (the codec fuzzer),
#          lld (links the sanitizer builds, four times faster than GNU ld),
#          clang-format (the format check), parallel (GNU parallel: orq's replacement strings are
#          tested against its --dry-run), libssl-dev (the dashboard's TLS), and for the dashboard's
#          real-component tests: chromium and nodejs (a browser driven by puppeteer-core, which
#          this script installs from the npm registry into tests/browser/node_modules at the
#          version its package-lock.json pins), prometheus (promtool and a server), curl and
#          openssl (requests and a test certificate), python3-pytest (the Python module's tests)
set -euo pipefail
packages=(g++ cmake make libzmq3-dev cppzmq-dev libboost-dev libboost-filesystem-dev
          libcli11-dev nlohmann-json3-dev libsqlite3-dev libgtest-dev git procps iproute2
          slurmctld slurmd slurm-client munge python3 clang libclang-rt-14-dev clang-format
          parallel libssl-dev chromium prometheus curl openssl nodejs pybind11-dev python3-dev
          python3-pytest lld)
# npm: Debian's package, unless the nodejs installed already brings its own.
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
browser_test() {  # puppeteer-core for tests/browser, as its lock file pins it
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
echo "orq setup: installing ${missing[*]}" >&2
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
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
browser_test
