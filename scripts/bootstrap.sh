#!/usr/bin/env bash
# Everything a fresh machine needs before the benchmark or the tests: dependencies, then the extension,
# built in place (ninja, incremental under build/). CUDA kernels are compiled whenever nvcc and a CUDA torch
# are present, GPU or not; POSEXT_SKIP_CUDA=1 skips them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
if [ "${POSEXT_SKIP_CUDA:-0}" != "1" ] && [ -x "$CUDA_HOME/bin/nvcc" ] \
   && "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)'; then
  export POSEXT_FORCE_CUDA=1
fi
"$PYTHON" setup.py -q build_ext --inplace
"$PYTHON" -c 'import json, posext; print("posext:", json.dumps(posext.info()))'
