#!/usr/bin/env bash
# The committed GPU reference run, sized to fit a short GPU lease (about 5 minutes on an H100): a subset of
# scripts/gpu_check.sh's grid. bf16, H=16, D=128, batch x seq_len = 16384.
#   dense:  full and causal, fwd at N = 1024, 4096, 16384; fwd_bwd at N = 4096
#   window: causal sliding window w = 256, fwd, N = 1024, 16384, 65536 (local_window, flex, full)
#   long causal: sdpa_cudnn (and full, which runs out of memory) at N = 65536, no window, for comparison
# then the same kernels timed directly with triton.testing.do_bench, and the harness-vs-direct check.
# Usage: bash scripts/gpu_reference.sh [OUT_DIR]   (results land in results/$RUN_NAME)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-results/gpu_check}}
RUN_NAME=${RUN_NAME:-reference}
mkdir -p "$OUT_DIR"
source scripts/gpu_env.sh
common=(run_name="$RUN_NAME" device=cuda dtype=bfloat16 heads=16 head_dim=128 tokens=16384 progress=plain)
status=0
run() { echo "== $*"; timeout "${STEP_TIMEOUT:-200}" "$@" 2>&1 | tee -a "$OUT_DIR/sweep.log" | tail -n 4; [[ ${PIPESTATUS[0]} -eq 0 ]] || status=1; }
run $PY -m harness sweep "${common[@]}" 'seq_len=[1024,4096,16384]' 'pattern=[full,causal]' mode=fwd \
    'variants=[sdpa_cudnn,sdpa_flash,flex,full]'
run $PY -m harness sweep "${common[@]}" seq_len=4096 'pattern=[full,causal]' mode=fwd_bwd \
    'variants=[sdpa_cudnn,sdpa_flash,flex,full]'
run $PY -m harness sweep "${common[@]}" 'seq_len=[1024,16384,65536]' pattern=window window=256 mode=fwd \
    'variants=[local_window,flex,full]'
run $PY -m harness sweep "${common[@]}" seq_len=65536 pattern=causal mode=fwd 'variants=[sdpa_cudnn,full]'
echo "== kernels timed directly (do_bench)"
timeout 120 $PY -m benchmarks.gpu_direct --csv "$OUT_DIR/direct.csv" --kernels sdpa_cudnn sdpa_flash flex \
    --seq-lens 1024 4096 16384 --tokens 16384 --heads 16 --head-dim 128 --dtype bfloat16 \
    --window 256 --window-seq-lens 1024 16384 65536 --window-kernels flex sdpa_cudnn 2>&1 | tee "$OUT_DIR/direct.log"
echo "== harness vs direct"
$PY -m benchmarks.gpu_direct --compare "results/$RUN_NAME/results.csv" --direct "$OUT_DIR/direct.csv" \
    --tolerance 0.03 2>&1 | tee "$OUT_DIR/compare.log"
exit $status
