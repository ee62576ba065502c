#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian 12 machine, then run lint, types and tests.
# Usage: bash scripts/test.sh [pytest args...]      (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

mapfile -t PKGS < <(grep -v '^\s*#' scripts/debian-packages.txt | grep -v '^\s*$')
missing=()
for p in "${PKGS[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -q
  # BUNDLER_VERSION: redmine's postinst fails with bookworm's default bundler 2.3.27 (docs/tickets.md)
  $SUDO env BUNDLER_VERSION=2.3.15 apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]'

echo "== ruff"; .venv/bin/ruff check diag tests bench scripts
echo "== mypy"; .venv/bin/mypy
echo "== lint-imports"; .venv/bin/lint-imports --no-cache
echo "== import cycles"; .venv/bin/python scripts/import_cycles.py --all
echo "== pytest"
exec .venv/bin/pytest "$@"
