#!/usr/bin/env bash
# The GPU proof kit: one command on a machine with an NVIDIA GPU that builds posext for that GPU, runs every
# CUDA test, runs compute-sanitizer's four tools over scripts/kernel_driver.py, benchmarks every op, and
# writes everything under $OUT (default ./gpu_out):
#   gpu_results.json (schema posext-gpu-check/1: device, driver, versions, date, every figure),
#   setup.log, build.log, tests.log, sanitizer.log, bench.log, kernels.png
#
#   bash scripts/gpu_wheels.sh             # first, where PyPI is reachable: test wheels into .whl/
#   bash scripts/gpu_check.sh              # on the GPU machine (torch with CUDA and nvcc already there)
#   bash scripts/gpu_check.sh --dry-run    # the same plumbing on the CPU, same JSON schema (the test suite runs it)
#
# Exit status: 0 every check passed, 1 something failed (build, a test, a skip, a sanitizer finding in posext's
# kernels), 2 a check could not run (compute-sanitizer missing or refused, time budget spent).
# Environment: OUT, PYTHON (python3), KIT_BUDGET_S (whole run, default 510 s), KIT_BUILD_S (the build's share,
# default 300 s), POSEXT_COMMIT (recorded),
# KIT_KEEP_WORK=1 (keep the scratch folder: per-tool sanitizer logs, junit XML, driver JSON).
# The build uses the machine's own torch and nvcc; TORCH_CUDA_ARCH_LIST defaults to the visible GPU's arch.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 64 ;;
esac
OUT=${OUT:-$ROOT/gpu_out}
PYTHON=${PYTHON:-python3}
BUDGET=${KIT_BUDGET_S:-510}
START=$(date +%s)
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/posext-gpu.XXXXXX")
trap '[ "${KIT_KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"' EXIT  # KIT_KEEP_WORK=1 keeps the scratch files
SITE=$WORK/site
DRYFLAG=$([ "$DRY" = 1 ] && echo --dry-run || true)
export ROOT OUT PYTHON WORK SITE DRY DRYFLAG
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${CUDA_HOME:-}" ]; then  # the toolkit folder: bin/nvcc's parent, links resolved (/usr/local/bin/nvcc -> ...)
  if [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_HOME=/usr/local/cuda
  elif command -v nvcc >/dev/null 2>&1; then CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  else CUDA_HOME=/usr/local/cuda; fi
fi
export CUDA_HOME PATH="$PATH:$CUDA_HOME/bin"
rm -f "$OUT"/{gpu_results.json,setup.log,build.log,tests.log,sanitizer.log,bench.log,kernels.png}
echo "posext GPU proof kit$([ "$DRY" = 1 ] && echo ' (dry run)'): out $OUT, scratch $WORK, budget ${BUDGET}s"

report() { "$PYTHON" "$ROOT/scripts/gpu_report.py" assemble --work "$WORK" --out "$OUT" $DRYFLAG "$@"; }

# stage NAME LOG LIMIT FUNCTION: runs FUNCTION under a time limit (cut to what the budget has left), its output
# appended to $OUT/LOG, and records status, exit code and seconds for the report.
stage() {
  local name=$1 log=$2 limit=$3 fn=$4 left rc t0 status
  left=$(( BUDGET - ($(date +%s) - START) - 20 ))
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then
    printf '%s\tskipped\t0\t0\t%s\n' "$name" "$log" >>"$WORK/stages.tsv"
    echo "== $name: skipped (time budget spent)"
    return 0
  fi
  echo "== $name (up to ${limit}s) -> $log"
  t0=$(date +%s.%N)
  echo "== $name $(date -u +%FT%TZ)" >>"$OUT/$log"
  timeout -k 10 "$limit" bash -c "$fn" >>"$OUT/$log" 2>&1
  rc=$?
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; 2) [ "$name" = sanitizer ] && status=unavailable || status=failed ;; *) status=failed ;; esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$log" >>"$WORK/stages.tsv"
  echo "   $name: $status (rc $rc)"
  report || true
}

env_stage() {
  "$PYTHON" "$ROOT/scripts/gpu_report.py" env --out "$WORK/env.json" $DRYFLAG && cat "$WORK/env.json"
  command -v nvidia-smi >/dev/null && nvidia-smi
  return 0
}

wheels_stage() {
  # the dry run resolves the wheel list against the index each time, so a pin that no longer exists shows here
  if [ "$DRY" = 1 ]; then bash "$ROOT/scripts/gpu_wheels.sh" || return 1; fi
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" --find-links "$ROOT/.whl" -r "$ROOT/scripts/gpu_wheels.txt" || {
    echo "wheels missing from .whl/: run scripts/gpu_wheels.sh where PyPI is reachable and carry .whl"; return 1; }
  "$PYTHON" -c "import timm, open_clip, hypothesis, setuptools; print('carried: timm', timm.__version__, 'open_clip',
open_clip.__version__, 'hypothesis', hypothesis.__version__, 'setuptools', setuptools.__version__)"
}

build_stage() {
  local cmd=("$PYTHON" -m pip install -v --disable-pip-version-check --no-build-isolation --no-index --no-deps -e "$ROOT")
  if [ "$DRY" = 1 ]; then
    # The suite that runs the dry run has the extension loaded: rebuilding under it could rewrite a mapped .so.
    echo "dry run: would run (CUDA_HOME=$CUDA_HOME, TORCH_CUDA_ARCH_LIST from the GPU): ${cmd[*]}"
    "$PYTHON" -m pip --version && "$PYTHON" -c "import setuptools, torch.utils.cpp_extension as c; print('CUDA_HOME', c.CUDA_HOME)" || return 1
    command -v nvcc >/dev/null && nvcc --version | tail -2
  else
    TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')} || return 1
    # -lineinfo: compute-sanitizer then names the source line of each finding
    export TORCH_CUDA_ARCH_LIST POSEXT_FORCE_CUDA=1 POSEXT_CUDA_LINEINFO=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
    echo "building for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST with CUDA_HOME=$CUDA_HOME, MAX_JOBS=$MAX_JOBS"
    nvcc --version | tail -2
    "${cmd[@]}" || return 1
  fi
  "$PYTHON" -c "import json, posext; i = posext.info(); print(json.dumps(i))
assert i['backend'] == 'extension', i['extension_load_error']
assert i['cuda_kernels_built'] or '$DRY' == '1', 'built without CUDA kernels'"
}

tests_stage() {
  local args=(-q -p no:cacheprovider -m cuda "$ROOT/tests")
  if [ "$DRY" = 1 ]; then
    "$PYTHON" -m pytest "${args[@]}" --collect-only | tee "$WORK/collect.txt" | tail -3
    if POSEXT_REQUIRE_CUDA=1 "$PYTHON" -m pytest "${args[@]}" --collect-only >/dev/null 2>&1; then
      echo "POSEXT_REQUIRE_CUDA=1 did not refuse a machine without a GPU"; return 1
    fi
    return 0
  fi
  "$PYTHON" -c "import xdist" 2>/dev/null && args+=(-n 4)
  # the sanitizer's four processes run beside these: a few CPU threads each for the CPU references
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} POSEXT_REQUIRE_CUDA=1 POSEXT_REQUIRE_EXTENSION=1 POSEXT_REQUIRE_CUDA_KERNELS=1 \
    "$PYTHON" -m pytest "${args[@]}" -rfEs --junitxml="$WORK/junit.xml"
}

# One sanitizer tool over the driver: log, exit code and the driver's own JSON in $WORK.
sanitize_one() {
  local tool=$1 sanitizer=$2 poison=--poison opts=(--tool "$1") help
  [ "$tool" = initcheck ] && poison=
  help=$("$sanitizer" --help 2>&1)
  # API return codes torch checks on purpose are not kernel errors; only options this version knows are passed
  grep -q -- --report-api-errors <<<"$help" && opts+=(--report-api-errors no)
  grep -q -- --print-limit <<<"$help" && opts+=(--print-limit 50)
  # no caching allocator: every tensor is its own allocation, so an access past its end is out of bounds
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTORCH_NO_CUDA_MEMORY_CACHING=1 "$sanitizer" "${opts[@]}" "$PYTHON" "$ROOT/scripts/kernel_driver.py" \
    --device cuda $poison --json "$WORK/driver_$tool.json" >"$WORK/sanitizer_$tool.log" 2>&1
  echo $? >"$WORK/sanitizer_$tool.rc"
}

sanitizer_stage() {
  local tool sanitizer rc=0
  if [ "$DRY" = 1 ]; then  # the driver on the CPU, once poisoned (as under memcheck/racecheck/synccheck), once not
    for tool in memcheck initcheck; do
      local poison=--poison; [ "$tool" = initcheck ] && poison=
      "$PYTHON" "$ROOT/scripts/kernel_driver.py" --device cpu $poison --json "$WORK/driver_$tool.json" \
        >"$WORK/sanitizer_$tool.log" 2>&1
      echo $? >"$WORK/sanitizer_$tool.rc"
      echo "--- driver on CPU, as for $tool (exit $(cat "$WORK/sanitizer_$tool.rc"))"; tail -8 "$WORK/sanitizer_$tool.log"
    done
    for tool in racecheck synccheck; do
      for f in driver_%s.json sanitizer_%s.log sanitizer_%s.rc; do
        cp "$WORK/$(printf "$f" memcheck)" "$WORK/$(printf "$f" "$tool")"
      done
    done
    if command -v compute-sanitizer >/dev/null; then compute-sanitizer --version | tail -1
    else echo "compute-sanitizer: not on this machine"; fi
    return 0
  fi
  sanitizer=$(command -v compute-sanitizer || ls "$CUDA_HOME"/bin/compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer \
    /opt/nvidia/*/compute-sanitizer 2>/dev/null | head -1)
  if [ -z "$sanitizer" ]; then echo "compute-sanitizer not found"; touch "$WORK/sanitizer_missing"; return 2; fi
  "$sanitizer" --version | tail -1
  for tool in memcheck racecheck initcheck synccheck; do sanitize_one "$tool" "$sanitizer" & done
  wait
  for tool in memcheck racecheck initcheck synccheck; do
    echo "--- $tool (exit $(cat "$WORK/sanitizer_$tool.rc"))"; cat "$WORK/sanitizer_$tool.log"
    grep -q "Device not supported" "$WORK/sanitizer_$tool.log" && rc=2
  done
  return $rc
}

bench_stage() {
  local device=cuda quick=()
  [ "$DRY" = 1 ] && device=cpu quick=(--quick)
  "$PYTHON" -m posext.cli bench --jobs kernels --device "$device" "${quick[@]}" --out "$WORK/bench" || return 1
  [ -f "$WORK/bench/kernels.png" ] && cp "$WORK/bench/kernels.png" "$OUT/kernels.png"  # no plot without matplotlib
  return 0
}

export -f env_stage wheels_stage build_stage tests_stage sanitize_one sanitizer_stage bench_stage

stage env setup.log 90 env_stage
stage wheels setup.log 90 wheels_stage
stage build build.log ${KIT_BUILD_S:-300} build_stage
if awk -F'\t' '$1 == "build" && $2 == "ok"' "$WORK/stages.tsv" | grep -q .; then
  # correctness checks side by side (neither is timed); the benchmark runs alone afterwards
  stage tests tests.log 240 tests_stage &
  stage sanitizer sanitizer.log 240 sanitizer_stage &
  wait
  stage bench bench.log 180 bench_stage
else
  echo "build failed: tests, sanitizer and benchmarks not run (see $OUT/build.log)"
fi
report --final
rc=$?
echo "results: $OUT/gpu_results.json$([ "${KIT_KEEP_WORK:-0}" = 1 ] && echo " (scratch files in $WORK)")"
exit $rc
