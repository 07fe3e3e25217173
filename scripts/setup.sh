#!/usr/bin/env bash
# One-time setup for a fresh Debian/Ubuntu machine: system packages, then npm packages.
# Safe to run again; it installs only what is missing. WITH_TEST_TOOLS=1 adds what the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

runtime=(softhsm2)                          # the development HSM (a PKCS#11 token in DATA_DIR)
tools=(opensc jose)                         # pkcs11-tool to inspect the token; Debian's jose CLI (interop)
test_tools=(chromium docker-compose p11-kit p11-kit-modules postgresql prometheus)  # audit page tests; compose validation; HSM outage tests; a separate database server's outage; promtool for the alert rules

want=("${runtime[@]}" "${tools[@]}")
[ "${WITH_TEST_TOOLS:-0}" = 1 ] && want+=("${test_tools[@]}")
need=()
for p in "${want[@]}"; do installed "$p" || need+=("$p"); done

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # docker-compose would recommend a Docker engine we do not need (it only validates the compose file).
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Node 26 comes from the `node` package in package.json; npm scripts run on it.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
