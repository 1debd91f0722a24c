#!/usr/bin/env bash
# Installs ff3r-ns with its test dependencies and runs the test suite on the CPU.
# GPU tests are skipped without CUDA. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
VENV=${FF3R_VENV:-.venv}
exec "$VENV/bin/python" -m pytest -q -ra "$@"
