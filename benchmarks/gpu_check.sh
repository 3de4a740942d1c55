#!/usr/bin/env bash
# The GPU checks (docs/GPU.md), on a machine with a CUDA device, from the repository root:
#
#     bash benchmarks/gpu_check.sh OUT_DIR [SECONDS]
#
# 1. correctness: tests/test_cuda.py (the zoo against its references on the GPU, every task
#    trained on the GPU as on the CPU, the compiled flag, a search through the process pool);
# 2. the transfer configuration's search on all cores, CPU workers then GPU workers, SECONDS
#    each (default 90), side by side in one run: experiments/efficiency.py on both;
# 3. the exported AdamW class against torch.optim.AdamW on the GPU (benchmarks/bench_export.py).
# Every part writes its log under OUT_DIR; a failing part does not stop the others.
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [SECONDS]}
secs=${2:-90}
mkdir -p "$out"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
workers=$(nproc)
{ nvidia-smi -L; $py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  echo "cores $workers"; } 2>&1 | tee "$out/machine.txt"
timeout 300 $py -m pytest tests/test_cuda.py -n 8 -p no:cacheprovider -rf 2>&1 | tee "$out/test_cuda.log" | tail -25
for dev in cpu cuda; do
  run=/tmp/gpu_check-$dev
  rm -rf "$run"
  timeout $((secs + 120)) $py -m optforge.cli search --config experiments/transfer.toml \
    --device "$dev" --backend process --workers "$workers" --time-limit "$secs" --out "$run" \
    > "$out/search-$dev.log" 2>&1
  (cd experiments && $py efficiency.py "$run" --workers "$workers") 2>&1 | tail -1 | sed "s/^/$dev: /" \
    | tee -a "$out/efficiency.txt"
done
timeout 150 $py benchmarks/bench_export.py --device cuda --blocks 7 2>&1 | tee "$out/bench_export.txt" | tail -12
