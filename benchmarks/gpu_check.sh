#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and network access (about 8 minutes):
#
#   1. the virtual environment with the GPU build of TensorFlow: pip install -e '.[dev,gpu]'
#      (as `make env GPU=1` does, same venv and stamp; reused when already installed);
#   2. the TensorFlow engine's tests (tests/test_tf_engine.py, CI=true so nothing skips), with the
#      GPU visible, then benchmarks/gpu_parity.py: the engine on the GPU against the numpy engine
#      (the tests build their engines with device="cpu");
#   3. benchmarks/bench_engines.py --gpu: FedSGD / FedAvg / sampled rounds for N = 10^4, 10^5, 10^6
#      parties against centralized gradient descent on the GPU, one Markdown table.
#
# Usage:  benchmarks/gpu_check.sh                       (from any directory)
#   VENV=path          the virtual environment (default .venv, the Makefile's)
#   PYTHON=python3.12  the interpreter that creates it
#   SKIP_INSTALL=1     use VENV as it is
#   BUDGET=270         seconds after which bench_engines.py starts no new configuration
# Exit status: 0 when the tests and the parity check passed (the timings are information).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
BUDGET=${BUDGET:-270}
STAMP="$VENV/.installed-gpu"
PY="$VENV/bin/python"
started=$SECONDS

echo "## GPU check ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  echo "nvidia-smi not found: is this a GPU machine?" >&2
fi

# 1. the environment (the Makefile's convention: one TensorFlow wheel, a stamp saying which)
if [ "${SKIP_INSTALL:-0}" = 1 ]; then
  echo "SKIP_INSTALL=1: using $VENV as it is"
elif [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ]; then
  echo "$VENV already has the GPU build (stamp $STAMP)"
else
  test -x "$PY" || "$PYTHON" -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip
  # tensorflow-cpu and tensorflow[and-cuda] install the same module: keep only one
  "$PY" -m pip uninstall -q -y tensorflow-cpu 2>/dev/null || true
  "$PY" -m pip install -q -e '.[dev,gpu]'
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi
echo "environment ready after $((SECONDS - started)) s"

"$PY" - <<'EOF'
import sys
from fl_helpers.tf_env import import_tensorflow
tf = import_tensorflow()
gpus = tf.config.list_physical_devices("GPU")
print(f"TensorFlow {tf.__version__}, built with CUDA: {tf.test.is_built_with_cuda()}, GPUs: {gpus}")
if not gpus:
    sys.exit("TensorFlow sees no GPU: check the driver (nvidia-smi) and that tensorflow[and-cuda] is installed")
EOF

# 2. correctness on this machine; keep going to the timings, fail at the end
status=0
echo
echo "### tests/test_tf_engine.py"
CI=true "$PY" -m pytest tests/test_tf_engine.py -q -p no:cacheprovider -o addopts="" || status=1
echo
"$PY" benchmarks/gpu_parity.py --device gpu || status=1
echo "tests and parity done after $((SECONDS - started)) s"

# 3. the timings: one table (progress on stderr)
echo
"$PY" benchmarks/bench_engines.py --gpu --budget "$BUDGET"
echo
echo "GPU check done in $((SECONDS - started)) s; tests and parity: $([ $status = 0 ] && echo passed || echo FAILED)"
exit $status
