#!/usr/bin/env bash
# orq from programs, against a build folder (default build/, as scripts/build.sh makes it):
#   1. the Python module's tests (pytest: python/tests, with the build's orq and module);
#   2. `cmake --install` into a temporary prefix, examples/cpp built against the installed
#      package (find_package(orq), orq::client) and both programs run on a broker of their own;
#   3. the installed Python module imported from that prefix and a task through it.
# Everything it makes is under a temporary directory ($TMPDIR), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
orq=$PWD/$build/orq
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orq-programs-XXXXXX")
export ORQ_HOME=$tmp/home
trap 'ORQ_HOME=$tmp/home "$orq" down >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
# The Python the module was built for.
python=$(cat "$build/python/interpreter")
say() { printf '== programs: %s\n' "$*"; }

say "the Python module's tests (pytest)"
ORQ_BINARY=$orq PYTHONPATH=$PWD/$build/python timeout 900 \
  "$python" -m pytest -q -p no:cacheprovider python/tests

say "cmake --install, and examples/cpp built against the installed package"
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cmake -S examples/cpp -B "$tmp/examples" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/examples" -j2 >/dev/null
"$orq" up -w 2 -t 10
out=$(timeout 60 "$tmp/examples/say_after")
echo "$out"
[[ $(head -3 <<<"$out" | tr '\n' ' ') == '"hello" "world" "!!!" ' ]] ||
  { echo "say_after printed the wrong thing" >&2; exit 1; }
out=$(timeout 60 "$tmp/examples/slow_function")
echo "$out"
grep -Eq '^\[([1-5](\.0)?, ){9}[1-5](\.0)?\]$' <<<"$(head -1 <<<"$out")" ||
  { echo "slow_function printed the wrong thing" >&2; exit 1; }

say "the installed Python module"
site=$("$python" -c "import sysconfig; print(sysconfig.get_path('purelib', vars={'base': '$tmp/prefix'}))")
out=$(PYTHONPATH=$site timeout 60 "$python" -c '
import asyncio, orq
async def main():
    async with orq.connect() as c:
        return await asyncio.gather(c.echo("installed"), c.sleep(0.1, 1))
print(orq.__file__.startswith("'"$tmp"'"), asyncio.run(main()))')
[[ $out == "True ['installed', 1]" ]] || { echo "the installed module printed '$out'" >&2; exit 1; }
say "passed"
