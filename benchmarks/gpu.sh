#!/usr/bin/env bash
# The one prepared run for a lent CUDA machine (about 6 minutes on an H200): the CUDA tests, then
# the speed and memory figures on the GPU. Needs python3 with torch, typer, rich, scipy, numpy,
# scikit-learn and pytest (the device image has them); lrphase runs from src/ without installing.
# Writes its logs and JSON under $OUT (default out/gpu): benchmarks/RESULTS.md takes the figures.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
status=0
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt" || exit 1
python3 -m pytest tests/test_devices.py tests/test_estimate.py -q -rs 2>&1 | tee "$OUT/tests.txt" || status=1
python3 benchmarks/speed.py --device cuda --modes auto,double,jvp --json "$OUT/speed.json" 2>&1 | tee "$OUT/speed.txt" || status=1
python3 benchmarks/memory.py --model cnn --batch 1024 --device cuda --json "$OUT/memory.json" 2>&1 | tee "$OUT/memory.txt" || status=1
exit $status
