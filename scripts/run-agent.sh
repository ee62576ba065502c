#!/usr/bin/env bash
# Set up diag on a fresh Debian 12 machine and run the agent with the shipped inventory.yaml.
# Usage: bash scripts/run-agent.sh [diag agent args...]   -> http://127.0.0.1:9847/metrics
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  $SUDO apt-get update -q && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 python3-venv python3-pip
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e .
exec .venv/bin/diag agent --inventory inventory.yaml "$@"
