#!/usr/bin/env bash
# Installs what the dashboard's browser test (tests/tests/dashboard.rs) needs on a Debian
# machine: Chromium from Debian (apt) and playwright-core from npm (npm ci here, from
# package-lock.json). playwright-core drives that Chromium and downloads no browser.
# Idempotent, and fast when everything is there: apt runs only when /usr/bin/chromium is
# missing (apt-get update only when the install fails without it), npm only when
# node_modules is missing or older than package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# apt needs root; use sudo when not root and it is there.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y --no-install-recommends "$@" ||
    { as_root apt-get update && as_root apt-get install -y --no-install-recommends "$@"; }
}

if [ ! -x /usr/bin/chromium ]; then
  echo "setup.sh: installing chromium (apt)" >&2
  apt_install chromium
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "setup.sh: installing nodejs and npm (apt)" >&2
  apt_install nodejs npm
fi

# npm ci writes node_modules/.package-lock.json: older than package-lock.json means stale.
stamp="$here/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ] || [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "setup.sh: installing playwright-core (npm ci in tests/browser)" >&2
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi
