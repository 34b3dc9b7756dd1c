#!/usr/bin/env sh
# Builds {{name}}.wasm from app.js against wit/ with componentize-js (npm install when
# missing).
set -eu
cd "$(dirname "$0")"
if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
  npm install --no-audit --no-fund --silent
fi
npm run --silent build
echo "built {{name}}.wasm"
