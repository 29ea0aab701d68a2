#!/usr/bin/env bash
# Installs the Debian packages orq builds with; does nothing when all are present.
# Must work as root on a fresh Debian 12 machine (uses sudo when not root and it is there).
set -euo pipefail
packages=(g++ cmake make pkg-config libzmq3-dev cppzmq-dev libboost-dev libboost-filesystem-dev
          libcli11-dev nlohmann-json3-dev libsqlite3-dev libgtest-dev procps iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0
echo "orq setup: installing ${missing[*]}" >&2
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
