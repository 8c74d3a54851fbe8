#!/usr/bin/env bash
# Install what ferry needs on Debian 12 (bookworm).
#   deploy/install-deps.sh          build dependencies only
#   deploy/install-deps.sh --test   plus what the tests use: curl, openssl, python3, valgrind,
#                                   testssl.sh (tests/integration/70-testssl.sh), iproute2 (ss),
#                                   haproxy (a load balancer sending the PROXY protocol,
#                                   tests/integration/46-proxy-protocol.sh), tinyproxy (an
#                                   egress proxy, tests/integration/47-egress-proxy.sh),
#                                   systemd (systemd-analyze, for deploy/systemd/verify.sh),
#                                   clang-format and clang-tidy (tests/lint/clang-format.sh and
#                                   clang-tidy.sh, run by .ci/run),
#                                   Node.js + npm (for pouchdb-server), and the npm packages
#                                   pinned in tests/package-lock.json and (the offline checks
#                                   of the Kubernetes and Compose files, tests/integration/
#                                   45-manifests.sh) deploy/validate/package-lock.json
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

pkgs=(build-essential cmake pkg-config libssl-dev libevent-dev libhttp-parser-dev
      libyaml-dev libcmocka-dev)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(curl openssl python3 valgrind procps psmisc clang libclang-rt-14-dev systemd
        testssl.sh iproute2 haproxy tinyproxy clang-format clang-tidy)
  # Node.js may already come from another source (e.g. NodeSource, which bundles npm and
  # conflicts with Debian's npm package): install Debian's only when node or npm is missing.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    pkgs+=(nodejs npm)
  fi
  pkgs+=(prometheus)  # its promtool checks /metrics (tests/integration/52-admin.sh)
fi

$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null

if [ "${1:-}" = "--test" ] && [ -f tests/package-lock.json ]; then
  npm ci --prefix tests --no-audit --no-fund --loglevel=error
  npm ci --prefix deploy/validate --no-audit --no-fund --loglevel=error
fi
