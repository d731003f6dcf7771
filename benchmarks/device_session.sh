#!/usr/bin/env bash
# The prepared accelerator check, one call: the trainer on every backbone (bf16 autocast, the JVP
# in float32, checkpoint resume, torch.compile'd sampling), then the digits images benchmark at two
# sizes with a GPU-sized training budget, both on the same card (run side by side).
# Usage: bash benchmarks/device_session.sh OUTDIR [BUDGET_S]
set -uo pipefail
out=${1:?usage: device_session.sh OUTDIR [BUDGET_S]}
budget=${2:-100}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MEANFLOW_SCI_CACHE=/tmp/mfs_cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
timeout 240 python3 benchmarks/device_check.py --device cuda --steps 300 --compile \
    --out "$out/device_check.json"
# launch-bound steps: eager against a CUDA graph and torch.compile (tangents checked first)
timeout 150 python3 benchmarks/gpu_step.py --device cuda --repeats 50 --out "$out/gpu_step.json"
python3 -c "from meanflow_sci.tasks.images import digit_classifier as d; print(d().description())"
timeout 330 python3 benchmarks/images.py --suite standard --device cuda --set budget_s="$budget" \
    --out "$out/img_standard" > /tmp/img_standard.log 2>&1 &
timeout 330 python3 benchmarks/images.py --suite full --device cuda --set budget_s="$budget" \
    --out "$out/img_full" > /tmp/img_full.log 2>&1 &
wait
tail -n 12 /tmp/img_standard.log /tmp/img_full.log
