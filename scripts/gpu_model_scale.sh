#!/usr/bin/env bash
# The model-scale benchmark on a lent GPU, in one command (about 3 minutes on an H200):
# PaliGemma 2 3B and 10B, bfloat16, RANDOM WEIGHTS, every cache mode, batch 1 and 4, 30 new tokens.
#
#   run(command="bash scripts/gpu_model_scale.sh", carry=[".gpu_wheels"], timeout_s=420)
#
# Runs from the working tree with the device image's torch and transformers (no rclpy needed).
# Results: $OUT/model_scale_gpu.json (+ model_scale_gpu_vision.json), and the printed tables.
# The image's transformers (5.17) lacks PaliGemma's mm_encoder_outputs, so the "vision" mode
# reports itself unsupported there. If .gpu_wheels/ holds the project's transformers 5.23.0 and
# huggingface-hub 1.33.0 wheels (git-ignored, hence the carry; fetch them beforehand with
#   .venv/bin/python -m pip download --no-deps -d .gpu_wheels \
#       transformers==5.23.0 huggingface-hub==1.33.0
# ), that mode is measured again with them, in a second process, after the main results are saved.
# Tried without a GPU (DEVICE=cpu SIZES=tiny) on torch 2.11 + transformers 5.17: both phases run.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/model_scale}
mkdir -p "$OUT"
export PYTHONPATH=. HF_HUB_OFFLINE=1
# DEVICE / SIZES: only to try this script without a GPU (DEVICE=cpu SIZES=tiny).
read -r -a SIZES <<< "${SIZES:-3b 10b}"
COMMON=(--device "${DEVICE:-cuda}" --dtype bfloat16 --sizes "${SIZES[@]}" --asks 5 --warmup 1
        --new-tokens 30)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import sys, torch, transformers; print(sys.version.split()[0], 'torch', \
torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
python scripts/bench_model_scale.py "${COMMON[@]}" --modes none vision prefix --batch 1 4 \
  --json "$OUT/model_scale_gpu.json"
status=$?

if compgen -G ".gpu_wheels/transformers-*.whl" > /dev/null; then
  echo "=== vision mode again with the carried wheels: $(ls .gpu_wheels)"
  pip install -q --no-deps --target /tmp/pinned_transformers .gpu_wheels/*.whl \
    && PYTHONPATH=/tmp/pinned_transformers:. python scripts/bench_model_scale.py "${COMMON[@]}" \
      --modes vision --batch 1 --json "$OUT/model_scale_gpu_vision.json"
fi
exit $status
