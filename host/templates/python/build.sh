#!/usr/bin/env sh
# Builds {{name}}.wasm from app.py against wit/ with componentize-py (installed with pip
# when missing).
set -eu
cd "$(dirname "$0")"
export PATH="$HOME/.local/bin:$PATH"
if ! command -v componentize-py >/dev/null 2>&1; then
  python3 -m pip install --user --quiet componentize-py==0.25.1
fi
componentize-py -d wit -w {{world}} componentize app -o {{name}}.wasm
echo "built {{name}}.wasm"
