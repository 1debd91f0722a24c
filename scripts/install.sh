#!/usr/bin/env bash
# Installs ff3r-ns and its dependencies into a virtual environment (default: .venv in the repo).
# Usage: bash scripts/install.sh [--test]      (--test also installs pytest and hypothesis)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FF3R_VENV:-.venv}
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

# ns-export imports open3d, which needs the system's libusb (missing on minimal Debian images).
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  echo "Installing libusb-1.0-0 (needed by open3d, which nerfstudio's ns-export imports)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null
fi

# The CPU renderer (ff3r_ns/core/render_cpu.py) compiles a small C++ library on first use.
if ! command -v c++ >/dev/null 2>&1; then
  echo "Installing g++ (the CPU renderer compiles a small C++ library on first use)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq g++ >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip
# torch first and pinned: nerfstudio alone would pull the newest torch, and torchvision must match it.
"$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install -q -e ".${extras}"
echo "ff3r-ns installed in $VENV ($("$PY" -c 'import torch; print("torch", torch.__version__)'))"
