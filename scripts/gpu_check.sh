#!/usr/bin/env bash
# The GPU run of issue 6: GPU tests, the conformance suite's CUDA cases, the GPU sweep through the harness, the
# kernels timed directly with do_bench, the harness-vs-do_bench checks and the report.
#
# Usage (from the repository root, on a CUDA machine):
#   bash scripts/gpu_check.sh [OUT_DIR]          # default OUT_DIR: $OUT/gpu_check when $OUT is set, else
#                                                # results/$RUN_NAME/gpu_check
# Environment:
#   GPU_CHECK_STEPS  the steps to run, in this order (default: all). H100 times: tests, conformance and direct
#                    as seen in earlier calls; the rest estimated from the reduced reference run:
#       tests         tests/test_gpu_variants.py, tests/test_measure_cuda.py        ~2 min
#       conformance   tests/test_conformance.py -k "$CONFORMANCE_K" (default "cuda"; flex compiles each case,
#                     ~8 s each: "flex and cuda and float32" runs just flex's float32 CUDA cases)  ~8 min
#       sweep_fwd     full and causal, fwd, N = 512 .. 16384, 7 variants            ~5 min
#       sweep_bwd     the same, fwd_bwd                                             ~6 min
#       sweep_window  causal window w=256 to N = 65536 (local_window, flex, full), sdpa_cudnn causal  ~2 min
#       direct        the kernels under triton.testing.do_bench, one pass           ~2 min
#       agreement     harness vs do_bench interleaved in one process, 3 rounds      ~4 min
#       compare       the sweep's rows vs the direct pass (two separate runs)       seconds
#       report        attnbench report on the run (CSV, plots, report.md)          seconds
#     Split them over calls that fit the device's 10-minute limit, and a session's 30 minutes, e.g.
#     CONFORMANCE_K="flex and cuda and float32" with "conformance agreement", then "sweep_fwd sweep_window", then
#     "sweep_bwd direct compare report" (a sweep cut off resumes when run again with the same RUN_NAME).
#   RUN_NAME         the sweep's run directory under results/ (default gpu_reference).
#   STEP_TIMEOUT     seconds before one step is stopped (default 590).
# When $OUT is set (the device machine), results/$RUN_NAME is copied there after every step, so a later call
# on a fresh machine can carry it back and resume.
# Wheels missing on the machine are installed from ./.whl when present (scripts/gpu_env.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
RUN_NAME=${RUN_NAME:-gpu_reference}
RUN_DIR=results/$RUN_NAME
if [[ -n "${OUT:-}" ]]; then OUT_DIR=${1:-$OUT/gpu_check}; else OUT_DIR=${1:-$RUN_DIR/gpu_check}; fi
STEPS=${GPU_CHECK_STEPS:-tests conformance sweep_fwd sweep_bwd sweep_window direct agreement compare report}
mkdir -p "$OUT_DIR"
source scripts/gpu_env.sh
status=0
has() { [[ " $STEPS " == *" $1 "* ]]; }
# step NAME LOG CMD...: run one command under the step timeout, log it, remember a failure
step() {
  local name=$1 log=$2; shift 2
  echo "== $name: $*"
  local t0=$SECONDS
  timeout "${STEP_TIMEOUT:-590}" "$@" 2>&1 | tee -a "$OUT_DIR/$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT_DIR/steps.log"
  [[ $rc -eq 0 ]] || status=1
  if [[ -n "${OUT:-}" && -d "$RUN_DIR" ]]; then mkdir -p "$OUT/$RUN_NAME" && cp -r "$RUN_DIR/." "$OUT/$RUN_NAME/"; fi
}


common=(run_name="$RUN_NAME" device=cuda dtype=bfloat16 heads=16 head_dim=128 tokens=16384 progress=plain)
dense=('seq_len=[512,1024,2048,4096,8192,16384]' 'pattern=[full,causal]'
       'variants=[sdpa_cudnn,sdpa_flash,sdpa_efficient,sdpa_math,flex,xformers,full]')

has tests && step tests tests.log $PY -m pytest -q -rs tests/test_gpu_variants.py tests/test_measure_cuda.py \
    -p no:cacheprovider
has conformance && step conformance conformance.log $PY -m pytest -q -rs tests/test_conformance.py \
    -k "${CONFORMANCE_K:-cuda}" \
    -p no:cacheprovider
has sweep_fwd && step sweep_fwd sweep.log $PY -m harness sweep "${common[@]}" "${dense[@]}" mode=fwd
has sweep_bwd && step sweep_bwd sweep.log $PY -m harness sweep "${common[@]}" "${dense[@]}" mode=fwd_bwd
if has sweep_window; then
  step sweep_window sweep.log $PY -m harness sweep "${common[@]}" 'seq_len=[1024,4096,16384,65536]' \
      pattern=window window=256 mode=fwd 'variants=[local_window,flex,full]'
  step sweep_window sweep.log $PY -m harness sweep "${common[@]}" 'seq_len=[1024,4096,16384,65536]' \
      pattern=causal mode=fwd 'variants=[sdpa_cudnn]'
fi
has direct && step direct direct.log $PY -m benchmarks.gpu_direct --csv "$OUT_DIR/direct.csv" \
    --kernels sdpa_cudnn sdpa_flash sdpa_efficient flex xformers \
    --seq-lens 512 1024 2048 4096 8192 16384 --tokens 16384 --heads 16 --head-dim 128 --dtype bfloat16 \
    --window 256 --window-seq-lens 1024 4096 16384 65536 --window-kernels flex sdpa_cudnn
has agreement && step agreement agreement.log $PY -m benchmarks.timer_agreement --csv "$OUT_DIR/agreement.csv" \
    --kernels sdpa_cudnn sdpa_flash flex --seq-lens 1024 4096 16384 --rounds 3 \
    --window 256 --window-seq-lens 1024 16384 65536 --window-kernels flex sdpa_cudnn
has compare && step compare compare.log $PY -m benchmarks.gpu_direct --compare "$RUN_DIR/results.csv" \
    --direct "$OUT_DIR/direct.csv" --tolerance 0.03
has report && step report report.log $PY -m harness report "$RUN_DIR"
{ nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv || true; } 2>&1 | tee -a "$OUT_DIR/env.txt"
exit $status
