#!/usr/bin/env bash
# The code's format is .clang-format's (clang-format 14, Debian 12).
#   scripts/format.sh          rewrites every .cc and .h file in place (tracked or new)
#   scripts/format.sh --check  changes nothing; lists the files that differ and fails if any do
#                              (the test command runs this)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in clang-format git; do
  command -v $tool >/dev/null || { echo "format: $tool not found (scripts/setup.sh installs it)" >&2; exit 1; }
done
# Tracked files and new ones not yet added (but not ignored ones).
listing=$(git ls-files --cached --others --exclude-standard '*.cc' '*.h') ||
  { echo "format: git could not list the sources (is $(pwd) a git checkout?)" >&2; exit 1; }
mapfile -t files <<<"$listing"
# A check that finds nothing to check has not checked: fail rather than pass.
if [[ -z $listing ]]; then
  echo "format: git lists no .cc or .h file in $(pwd): nothing was checked" >&2
  exit 1
fi
if [[ ${1:-} == --check ]]; then
  bad=$(clang-format --dry-run "${files[@]}" 2>&1 | grep 'warning: code should be clang-formatted' | cut -d: -f1 | sort -u || true)
  if [[ -n $bad ]]; then
    echo "format: these files differ from .clang-format (run scripts/format.sh):" >&2
    echo "$bad" | sed 's/^/  /' >&2
    exit 1
  fi
  echo "format: ${#files[@]} files as .clang-format says"
else
  clang-format -i "${files[@]}"
fi
