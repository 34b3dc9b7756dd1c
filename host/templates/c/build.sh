#!/usr/bin/env sh
# Builds {{name}}.wasm: app.c and the bindings in bindings/ compiled for wasm32-wasi with
# clang and wasi-libc, then wrapped into a component by `fluid componentize`.
#   CC            the compiler (clang-14, then clang, when unset)
#   WASI_SYSROOT  wasi-libc's sysroot, when the compiler does not find it by itself
#   FLUID         the fluid binary (fluid on PATH when unset)
set -eu
cd "$(dirname "$0")"
CC="${CC:-$(command -v clang-14 || command -v clang || echo clang)}"
FLUID="${FLUID:-fluid}"
mkdir -p build
"$CC" --target=wasm32-wasi ${WASI_SYSROOT:+--sysroot="$WASI_SYSROOT"} -mexec-model=reactor \
  -Os -Wall -Werror -Wl,--strip-all -Ibindings -o build/{{name}}.core.wasm app.c bindings/{{world}}.c
"$FLUID" componentize build/{{name}}.core.wasm --world {{world}} --out {{name}}.wasm
echo "built {{name}}.wasm"
