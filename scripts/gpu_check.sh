#!/usr/bin/env bash
# The GPU run: install the carried wheels, run the GPU tests and the conformance suite on CUDA, time the
# kernels directly with do_bench, run the GPU sweep through the harness, and check harness vs direct times.
#
# Usage (from the repository root, on a CUDA machine):
#   bash scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: results/gpu_check (or $OUT when set)
# Environment: GPU_CHECK_STEPS="tests direct sweep compare" (a subset to run fewer steps);
#              RUN_NAME (the sweep's run directory name under results/, default gpu_reference).
# Wheels missing on the machine (hydra-core, omegaconf, antlr4, xformers) are installed from ./.whl when
# present (make them with shared/gpu/wheels.sh); torch stays the machine's own.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-results/gpu_check}}
STEPS=${GPU_CHECK_STEPS:-tests direct sweep compare}
RUN_NAME=${RUN_NAME:-gpu_reference}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
PY=${PYTHON:-python3}
status=0
has() { [[ " $STEPS " == *" $1 "* ]]; }

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT_DIR/env.txt"

if has tests; then
  echo "== GPU tests (about 100 s on an H100)"
  $PY -m pytest -q -rs -s tests/test_gpu_variants.py -p no:cacheprovider 2>&1 | tee "$OUT_DIR/tests.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
  # flex compiles forward and backward for every case (about 8 s each on an H100): ~7 minutes for its 48
  echo "== conformance suite on CUDA and CPU"
  $PY -m pytest -q -rs tests/test_conformance.py -p no:cacheprovider 2>&1 | tee "$OUT_DIR/conformance.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi

if has direct; then
  echo "== kernels timed directly (do_bench)"
  $PY -m benchmarks.gpu_direct --csv "$OUT_DIR/direct.csv" \
      --seq-lens 512 1024 2048 4096 8192 16384 --tokens 16384 --heads 16 --head-dim 128 --dtype bfloat16 \
      --window 256 --window-seq-lens 1024 4096 16384 65536 2>&1 | tee "$OUT_DIR/direct.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi

if has sweep; then
  echo "== GPU sweep through the harness"
  # dense: full and causal, fwd and fwd_bwd, N = 512 .. 16384 at batch x seq_len = 16384
  $PY -m harness.cli sweep run_name="$RUN_NAME" device=cuda dtype=bfloat16 heads=16 head_dim=128 tokens=16384 \
      'seq_len=[512,1024,2048,4096,8192,16384]' 'pattern=[full,causal]' 'mode=[fwd,fwd_bwd]' \
      'variants=[sdpa_cudnn,sdpa_flash,sdpa_efficient,sdpa_math,flex,xformers,full]' 2>&1 | tee "$OUT_DIR/sweep_dense.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
  # long context: causal sliding window w = 256 up to N = 65536, and sdpa_cudnn full causal for comparison
  $PY -m harness.cli sweep run_name="$RUN_NAME" device=cuda dtype=bfloat16 heads=16 head_dim=128 tokens=16384 \
      'seq_len=[1024,4096,16384,65536]' pattern=window window=256 mode=fwd \
      'variants=[local_window,flex,full]' 2>&1 | tee "$OUT_DIR/sweep_window.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
  $PY -m harness.cli sweep run_name="$RUN_NAME" device=cuda dtype=bfloat16 heads=16 head_dim=128 tokens=16384 \
      'seq_len=[1024,4096,16384,65536]' pattern=causal mode=fwd 'variants=[sdpa_cudnn]' \
      2>&1 | tee "$OUT_DIR/sweep_causal_long.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi

if has compare; then
  echo "== harness vs direct (each variant within 3 % of the same kernel under do_bench)"
  $PY -m benchmarks.gpu_direct --compare "results/$RUN_NAME/results.csv" --direct "$OUT_DIR/direct.csv" \
      --tolerance 0.03 2>&1 | tee "$OUT_DIR/compare.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
fi
exit $status
