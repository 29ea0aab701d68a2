#!/usr/bin/env bash
# orq from programs, against a build folder (default build/, as scripts/build.sh makes it):
#   1. the Python module's tests (pytest: python/tests, with the build's orq and module);
#   2. `cmake --install` into a temporary prefix, examples/cpp built against the installed
#      package (find_package(orq), orq::client) and both programs run on a broker of their own;
#   3. the installed Python module imported from that prefix and a task through it;
#   4. the README's "Three ways in", each shell block run as written (in a directory where
#      build/ is this build, with the *.log files and the ./sim it names).
# Everything it makes is under a temporary directory ($TMPDIR), removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
orq=$PWD/$build/orq
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orq-programs-XXXXXX")
export ORQ_HOME=$tmp/home
trap 'for h in "$tmp"/home "$tmp"/readme-home-*; do ORQ_HOME=$h "$orq" down >/dev/null 2>&1 || true; done
      rm -rf "$tmp"' EXIT
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

say "the README's three ways in, as written"
"$orq" down >/dev/null
readme=$tmp/readme
mkdir -p "$readme"
ln -s "$PWD/$build" "$readme/build"
printf 'one\n' >"$readme/a.log"
printf 'two\n' >"$readme/b.log"
printf '#!/bin/sh\necho "sim $1"\n' >"$readme/sim"
chmod +x "$readme/sim"
# The ```sh blocks between "## Three ways in" and the next heading, NUL-separated.
mapfile -d '' blocks < <(awk '/^## Three ways in/ { on = 1; next } /^## / { on = 0 }
  on && /^```sh/ { inside = 1; next } on && inside && /^```/ { inside = 0; printf "%s%c", text, 0; text = ""; next }
  inside { text = text $0 "\n" }' README.md)
(( ${#blocks[@]} == 3 )) || { echo "README: ${#blocks[@]} shell blocks under 'Three ways in', not 3" >&2; exit 1; }
expected=($'a.log.gz b.log.gz|1\tsim 1' $'a\nb\nc' "['hello', 'world', '!!!']|144")
for i in 0 1 2; do
  home=$tmp/readme-home-$i
  out=$(cd "$readme" && ORQ_HOME=$home timeout 120 bash -euo pipefail -c "${blocks[$i]}" 2>&1) ||
    { echo "README block $((i + 1)) failed:"$'\n'"${blocks[$i]}"$'\n'"$out" >&2; exit 1; }
  ORQ_HOME=$home "$orq" down >/dev/null 2>&1 || true
  IFS='|' read -r -d '' -a wants < <(printf '%s\0' "${expected[$i]}") || true
  for want in "${wants[@]}"; do
    if [[ $want == *.gz* ]]; then
      for file in $want; do [[ -f $readme/$file ]] || { echo "README block 1 made no $file" >&2; exit 1; }; done
    elif [[ $out != *"$want"* ]]; then
      echo "README block $((i + 1)) printed:"$'\n'"$out"$'\n'"not: $want" >&2
      exit 1
    fi
  done
done
say "passed"
