#!/usr/bin/env bash
# Downloads the wheels pinned in scripts/gpu_wheels.txt for the GPU machine (CPython 3.12, manylinux x86-64)
# into .whl/ (git-ignored), from where scripts/gpu_check.sh installs them with --no-index: that machine
# reaches no package index. Run it where PyPI is reachable; wheels already there are kept.
#   WHEEL_DIR (default .whl), GPU_PYTHON_VERSION (default 3.12) override the target.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
dest=${WHEEL_DIR:-.whl}
pyver=${GPU_PYTHON_VERSION:-3.12}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
mkdir -p "$dest"
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$pyver" --implementation cp "${platforms[@]}" -d "$dest" -r scripts/gpu_wheels.txt
echo "gpu wheels in $dest ($(du -sh "$dest" | cut -f1)):"
ls "$dest"
