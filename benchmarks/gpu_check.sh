#!/usr/bin/env bash
# A GPU check, ready to run on a CUDA machine in under 10 minutes:
#
#     benchmarks/gpu_check.sh [RESULTS_FILE]        (default: gpu_check_results.txt; PYTHON=... picks the interpreter)
#
# 1. the test suite (not the slow tests) with the GPU visible: tests whose runs use --device auto train on it;
# 2. a bf16 `sagan train` smoke (sagan_32, paper widths); 3. an fp16 smoke with torch.amp.GradScaler
#    (benchmarks/gpu_smoke.py fp16: the loop itself runs fp32 or bf16); 4. `sagan train` with and without
#    --compile (images/s of each); 5. one-process DDP with nccl under torchrun (gpu_smoke.py ddp); 6. the training
#    benchmark (bench_train.py --device cuda) against mimicry's SAGAN-32 at paper widths, when torch-mimicry is
#    installed (pip install --no-deps torch-mimicry==0.1.16).
# Every step has a time limit inside a 570-second budget; each step's status, time and output tail go to the one
# results file. Exit status: 0 when every step passed, 1 when one failed, 2 (one line) when there is no GPU.
# GPU_CHECK_REHEARSAL=1 runs the same steps on the CPU with tiny widths, few steps and one test file (gloo for
# DDP): a check of the script itself, which tests/test_gpu_check.py runs.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=${1:-gpu_check_results.txt}
BUDGET=570

DEVICE=cuda BACKEND=nccl STEPS=(100 50 200 20) TESTS=() SIZE=() COMPILE=(--compile)
BENCH=(--models sagan_32 --iters 10 --warmup 3 --batch-size 64)
if [[ ${GPU_CHECK_REHEARSAL:-0} == 1 ]]; then
    DEVICE=cpu BACKEND=gloo STEPS=(2 2 2 2) TESTS=(tests/test_config.py) SIZE=(--set model_args.g_ch=8 --set model_args.d_ch=8)
    BENCH=(--models sagan_32 --iters 1 --warmup 1 --batch-size 2)
    COMPILE=()  # compiling on a shared CPU takes minutes; the rehearsal checks the step, not the compiler
elif ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
    echo "gpu_check: no CUDA GPU visible to torch ($PY: torch.cuda.is_available() is False); run it on a machine with an NVIDIA GPU" >&2
    exit 2
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=0
START=$SECONDS
{
    echo "# sagan GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/# gpu: /'
    "$PY" -c "import torch; print(f'# torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}')"
} > "$RESULTS"

# step NAME SECONDS CMD...: run CMD with a limit (never past the budget), record status, time and output tail
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if ((left < 10)); then
        echo "== $name: SKIPPED (time budget spent)" >> "$RESULTS"
        FAILED=1
        return
    fi
    ((limit > left)) && limit=$left
    local t0=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" > "$WORK/out.txt" 2>&1
    rc=$?
    if ((rc == 0)); then
        echo "== $name: ok in $((SECONDS - t0)) s" >> "$RESULTS"
    else
        echo "== $name: FAILED (exit $rc$( ((rc == 124)) && echo ", over its ${limit} s limit")) in $((SECONDS - t0)) s" >> "$RESULTS"
        FAILED=1
    fi
    grep -v "^\s*$" "$WORK/out.txt" | tail -n 12 | sed 's/^/    /' >> "$RESULTS"
    echo "$name: exit $rc" >&2
}

# a small image folder for the training smokes: 512 random 32x32 RGB images in two classes
"$PY" - "$WORK/data" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for c in ("a", "b"):
    (Path(sys.argv[1]) / c).mkdir(parents=True)
    for i in range(256):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(Path(sys.argv[1]) / c / f"{i}.png")
EOF
TRAIN=(-m sagan train --data "$WORK/data" --model sagan_32 --batch-size 64 --device "$DEVICE" --sample-every 100000
       --checkpoint-every 100000 --set standing_samples=0 --set log_every=50 "${SIZE[@]}")

WIDTH=$( ((${#SIZE[@]})) && echo 8 || echo 0)
step "test suite (not slow) on the GPU" 240 "$PY" -m pytest -q -x -m "not slow" -p no:cacheprovider "${TESTS[@]}"
step "bf16 training smoke (sagan_32, ${STEPS[0]} steps)" 60 "$PY" "${TRAIN[@]}" --precision bf16 --max-steps "${STEPS[0]}" \
    --out "$WORK/bf16"
step "fp16 + GradScaler smoke (sagan_32, ${STEPS[1]} steps)" 45 "$PY" benchmarks/gpu_smoke.py fp16 --device "$DEVICE" \
    --steps "${STEPS[1]}" --batch-size 64 --width "$WIDTH"
step "torch.compile off (bf16, ${STEPS[2]} steps)" 60 "$PY" "${TRAIN[@]}" --precision bf16 --max-steps "${STEPS[2]}" \
    --out "$WORK/eager"
step "torch.compile on (bf16, ${STEPS[2]} steps)" 120 "$PY" "${TRAIN[@]}" --precision bf16 --max-steps "${STEPS[2]}" \
    "${COMPILE[@]}" --out "$WORK/compiled"
step "one-process DDP, $BACKEND (torchrun)" 60 "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 \
    benchmarks/gpu_smoke.py ddp --backend "$BACKEND" --device "$DEVICE" --steps "${STEPS[3]}" --batch-size 64 \
    --width "$WIDTH"
PEER=()
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch_mimicry') is None)" 2>/dev/null; then
    PEER=(--peer)
else
    echo "# mimicry is not installed: the benchmark runs without the peer (pip install --no-deps torch-mimicry==0.1.16)" >> "$RESULTS"
fi
step "training benchmark, sagan_32 at paper widths${PEER:+ vs mimicry}" 120 "$PY" benchmarks/bench_train.py \
    --device "$DEVICE" --precisions fp32,bf16 --threads 4 "${BENCH[@]}" "${PEER[@]}"

echo "# total $((SECONDS - START)) s; $( ((FAILED)) && echo "SOME STEPS FAILED" || echo "all steps passed")" >> "$RESULTS"
echo "gpu_check: wrote $RESULTS ($( ((FAILED)) && echo "some steps failed" || echo "all steps passed"))" >&2
exit $FAILED
