#!/usr/bin/env bash
# One-time setup for a fresh Debian/Ubuntu machine: system packages, then npm packages.
# Safe to run again; it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
need=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)                 # the development/test HSM
command -v pkcs11-tool >/dev/null || need+=(opensc)                          # inspect HSM objects
command -v jose >/dev/null || need+=(jose)                                   # independent JOSE implementation (interop tests)
if [ "${WITH_TEST_TOOLS:-0}" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)                         # audit web page tests
  command -v docker-compose >/dev/null || need+=(docker-compose)             # compose file validation
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Node 26 comes from the `node` package in package.json; npm scripts run on it.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
