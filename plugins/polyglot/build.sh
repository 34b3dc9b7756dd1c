#!/usr/bin/env bash
# Builds the polyglot components (plugins and tasks written in Python and JavaScript)
# against wit/, into plugins/polyglot/out/:
#   pycount.wasm     plugin, Python (componentize-py)
#   pytasks.wasm     task component, Python (componentize-py)
#   jsfailures.wasm  plugin, JavaScript (componentize-js, js/componentize.mjs)
#   jstasks.wasm     task component, JavaScript (componentize-js)
# Installs the tools when missing (pip install --user componentize-py; npm ci in js/; for C
# projects made by `fluid new --lang c`, Debian's clang, lld and wasi-libc with apt) and
# rebuilds a component only when its sources, the WIT or the tool changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/out"
mkdir -p "$out"
export PATH="$HOME/.local/bin:$PATH"

if ! command -v componentize-py >/dev/null 2>&1; then
  echo "build.sh: installing componentize-py (pip install --user)" >&2
  python3 -m pip install --user --quiet componentize-py==0.25.1
fi
if [ ! -d "$here/js/node_modules/@bytecodealliance/componentize-js" ]; then
  echo "build.sh: installing componentize-js (npm ci in plugins/polyglot/js)" >&2
  (cd "$here/js" && npm ci --no-audit --no-fund --silent)
fi

# C: clang that links a wasm32-wasi reactor against wasi-libc (what `fluid new --lang c`
# projects build with). Checked by doing it, so a missing builtins library counts too.
c_works() {
  printf 'int f(void) { return 1; }\n' |
    clang-14 --target=wasm32-wasi -mexec-model=reactor -x c - -o /dev/null >/dev/null 2>&1
}
if ! c_works; then
  echo "build.sh: installing clang, lld and wasi-libc (apt)" >&2
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  pkgs="clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends $pkgs ||
    { as_root apt-get update && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends $pkgs; }
fi

# stamp NAME TOOL_VERSION FILES...: true when out/NAME.wasm is up to date.
fresh() {
  local name="$1" tool="$2"; shift 2
  local sum
  sum="$( { echo "$tool"; cat "$root"/wit/*.wit "$@"; } | sha256sum | cut -d' ' -f1)"
  if [ -f "$out/$name.wasm" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$sum" ]; then
    return 0
  fi
  echo "$sum" > "$out/$name.stamp.next"
  return 1
}
done_() { mv "$out/$1.stamp.next" "$out/$1.stamp"; echo "build.sh: built $out/$1.wasm" >&2; }

py_version="$(componentize-py --version)"
for spec in pycount:plugin pytasks:task; do
  name="${spec%%:*}" world="${spec##*:}"
  if ! fresh "$name" "$py_version" "$here/python/$name/"*.py; then
    componentize-py -d "$root/wit" -w "$world" componentize -p "$here/python/$name" app -o "$out/$name.wasm.tmp"
    mv "$out/$name.wasm.tmp" "$out/$name.wasm"
    done_ "$name"
  fi
done

js_version="$(sha256sum < "$here/js/package-lock.json") $(sha256sum < "$here/js/componentize.mjs")"
for spec in jsfailures:plugin jstasks:task; do
  name="${spec%%:*}" world="${spec##*:}"
  if ! fresh "$name" "$js_version" "$here/js/$name.js"; then
    # componentize-js reads the WIT through WASI, which resolves relative paths only.
    (cd "$here/js" && node componentize.mjs "$name.js" ../../../wit "$world" "$out/$name.wasm.tmp")
    mv "$out/$name.wasm.tmp" "$out/$name.wasm"
    done_ "$name"
  fi
done
