#!/usr/bin/env bash
# Installs what tests/test_viewer_browser.py needs: Debian's chromium (apt-get) and the Playwright Python
# package (pip, into the active/selected interpreter); scripts/test.sh runs it before pytest. Playwright drives
# the system chromium through `executable_path`; no browser is ever downloaded (`playwright install` is never run).
# Idempotent and quiet: does nothing when both are present.
# Usage: bash scripts/install_browser.sh   (interpreter: $PYTHON if set, else the active venv's, else the
#                                          repo's .venv from scripts/install.sh; never a system python)
# Exit status 0 when both are usable; otherwise non-zero with the reason on the last line of stderr.
set -euo pipefail

fail() { echo "install_browser: $*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then PY="$VIRTUAL_ENV/bin/python"
  elif [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"
  else fail "no virtual environment: activate one or set PYTHON=/path/to/venv/bin/python"; fi
fi
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$CHROMIUM" ]; then
  command -v apt-get >/dev/null 2>&1 || fail "no $CHROMIUM and no apt-get (not a Debian/Ubuntu system)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    # -n: never prompt for a password (this runs unattended from scripts/test.sh); fail with a reason instead.
    command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null || fail "no $CHROMIUM; installing it needs root or passwordless sudo"
    SUDO="sudo -n"
  fi
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    rm -f "$log"
    fail "apt-get install chromium failed (see above)"
  fi
  rm -f "$log"
  [ -x "$CHROMIUM" ] || fail "apt-get installed chromium but $CHROMIUM is missing"
fi

if ! "$PY" -c "import playwright.sync_api" >/dev/null 2>&1; then
  log=$(mktemp)
  if ! "$PY" -m pip install -q --disable-pip-version-check playwright >"$log" 2>&1; then
    tail -n 5 "$log" >&2
    rm -f "$log"
    fail "pip install playwright failed with $PY (see above)"
  fi
  rm -f "$log"
  "$PY" -c "import playwright.sync_api" >/dev/null 2>&1 || fail "playwright installed but not importable by $PY"
fi
exit 0
