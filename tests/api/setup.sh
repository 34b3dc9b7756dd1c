#!/usr/bin/env bash
# Installs what the API tests (tests/tests/api_contract.rs) need: schemathesis, which fuzzes a
# live host from its /openapi.json, and aio-fluid, whose pydantic models check the host's
# answers (with its `db` extra, for the history models). Both go into a virtualenv of their own, tests/api/.venv (aio-fluid 2.12 wants
# Python 3.12 or later), pinned. Fast when present: pip runs only when the pins changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
pins="schemathesis==4.32.5 aio-fluid[db]==2.12.1"

if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$pins" ]; then
  exit 0
fi

# A Python of at least 3.12 for the virtualenv.
# pyenv's shims name versions that are not selected: look in its versions folder too.
py=""
pyenv_root="$(pyenv root 2>/dev/null || true)"
for cand in python3.13 python3.12 python3 ${pyenv_root:+"$pyenv_root"/versions/3.1[2-9]*/bin/python3}; do
  if command -v "$cand" >/dev/null 2>&1 &&
    "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    py="$cand"
    break
  fi
done
if [ -z "$py" ]; then
  echo "setup.sh: aio-fluid 2.12 needs Python 3.12 or later (python3.12 or python3.13 on PATH, or in pyenv)" >&2
  exit 1
fi

echo "setup.sh: installing $pins into tests/api/.venv ($py)" >&2
rm -rf "$venv"
"$py" -m venv "$venv"
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check $pins
echo "$pins" > "$venv/.pins"
