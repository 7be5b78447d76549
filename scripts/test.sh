#!/usr/bin/env bash
# Set up (if needed) and run every check: ruff, mypy and the whole test suite -- including
# tests/package (marker "package"): the sdist built, the wheel built from it in a clean build
# venv, installed in fresh venvs outside the tree and run (the reference client through the
# installed twistd daemons; beside pybrid-computing; Python 3.11-3.13; the dependency floors).
# `bash scripts/test.sh -m "not package"` leaves those out while developing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Test-only system packages: headless Chromium (status-page screenshot test) and curl (a docs
# block).  Installed when we can (root with apt-get, as on CI); otherwise those tests skip.
if { [ ! -x /usr/bin/chromium ] || ! command -v curl >/dev/null; } \
   && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium curl) \
    >/tmp/pybrid-apt.log 2>&1 || echo "note: could not install chromium/curl (see /tmp/pybrid-apt.log)"
fi
echo "== ruff"; .venv/bin/ruff check pybrid tests benchmarks twisted examples
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/python -m pytest "$@"
