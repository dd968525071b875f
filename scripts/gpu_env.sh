# Sourced by the GPU scripts (from the repository root, with OUT_DIR set): unbuffered output, the carried wheels
# (hydra-core, omegaconf, antlr4, xformers from ./.whl, made by shared/gpu/wheels.sh) installed beside the
# machine's own torch, PYTHONPATH, PY, and the GPU and library versions appended to $OUT_DIR/env.txt.
export PYTHONUNBUFFERED=1 KINETO_LOG_LEVEL=5
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
PY=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
    --format=csv || true
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee -a "$OUT_DIR/env.txt"
