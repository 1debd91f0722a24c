#!/usr/bin/env bash
# Installs ff3r-ns with its test dependencies, and the viewer test's headless browser (scripts/install_browser.sh:
# tests never install software), then runs the test suite on the CPU. GPU tests are skipped without CUDA.
# Where the browser cannot be installed (no root), tests/test_viewer_browser.py skips and says why, unless
# FF3R_REQUIRE_BROWSER=1 (CI) makes that an error. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
VENV=${FF3R_VENV:-.venv}
if ! PYTHON="$VENV/bin/python" bash scripts/install_browser.sh; then
  [ "${FF3R_REQUIRE_BROWSER:-0}" = 1 ] && exit 1
  echo "test.sh: no headless browser: tests/test_viewer_browser.py will skip" >&2
fi
exec "$VENV/bin/python" -m pytest -q -ra "$@"
