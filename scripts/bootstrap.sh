#!/usr/bin/env bash
# Set-up before `make bench` / `make test`, on a fresh clone or again on an existing one (each step reuses
# what is there): the project virtualenv .venv, the dependencies of requirements-dev.txt in it, then posext
# installed into it in editable mode, which builds posext._C in place (ninja, incremental under build/).
# Afterwards `.venv/bin/posext` exists and .venv's python imports posext from any folder.
#
# .venv is made with --system-site-packages: the packages of the interpreter it is made from (torch alone is
# ~5.5 GB with its CUDA libraries) are reused where they satisfy requirements-dev.txt; pip installs whatever
# is missing or differs into .venv only, never into that interpreter. POSEXT_VENV_ISOLATED=1 makes a plain
# venv instead, which downloads everything.
#
# Environment: PYTHON (the interpreter .venv is made from; default python3), VENV (default .venv), and the
# build switches of setup.py (POSEXT_FORCE_CUDA, POSEXT_SKIP_CUDA, POSEXT_CUDA_LINEINFO, TORCH_CUDA_ARCH_LIST).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# An nvcc on PATH outside its toolkit folder (a /usr/local/bin/nvcc link) makes torch guess a wrong CUDA_HOME.
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi

setup_t0=$SECONDS
step() { step_t0=$SECONDS; echo "==> $*"; }
step_done() { echo "    done in $((SECONDS - step_t0)) s (set-up so far: $((SECONDS - setup_t0)) s)"; }
python_version() { "$1" -c 'import platform; print(platform.python_version())'; }

# 1. the project virtualenv
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' 2>/dev/null; then
  step "virtualenv: reusing $VENV (Python $(python_version "$VENV/bin/python"))"
else
  if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ]; then
    echo "bootstrap: $VENV exists and is not a virtualenv; move it away or set VENV to another folder" >&2
    exit 1
  fi
  venv_flags=(--clear --system-site-packages)
  reuse="reusing its installed packages"
  if [ "${POSEXT_VENV_ISOLATED:-0}" = 1 ]; then
    venv_flags=(--clear)
    reuse="isolated (POSEXT_VENV_ISOLATED=1)"
  fi
  step "virtualenv: creating $VENV from $PYTHON (Python $(python_version "$PYTHON")), $reuse"
  "$PYTHON" -m venv "${venv_flags[@]}" "$VENV" || {
    echo "bootstrap: '$PYTHON -m venv' failed; install the venv module (Debian/Ubuntu: python3-venv)" >&2
    exit 1
  }
fi
VENV_PYTHON=$(cd "$VENV/bin" && pwd)/python
step_done

# 2. dependencies: pip lists what it collects and installs; the requirements already met are left out
step "dependencies: pip install -r requirements-dev.txt into $VENV"
"$VENV_PYTHON" -m pip install -r requirements-dev.txt 2>&1 \
  | { grep -v '^Requirement already satisfied' || true; }
step_done

# 3. posext itself. setup.py says which kernels it builds and why; ninja reports each compiled file. All of
# pip's verbose output, the compiler's included, goes to the log, whose end is shown if the build fails.
log=build/bootstrap-install.log
mkdir -p build
step "posext: pip install --no-build-isolation -e . (builds posext._C; full output in $log)"
# The filter flushes each line: the build takes minutes and these lines are its only sign of life.
progress_filter='
import re, sys, time
t0 = time.time()
for line in sys.stdin:
    line = line.strip()  # pip -v indents the output of the build
    took = f"+{time.time() - t0:.0f} s"
    ninja = re.match(r"\[\d+/\d+\] ", line)  # ninja, writing to a pipe, prints one line per finished command
    if line.startswith(("posext build:", "Successfully installed")):
        print("    " + line, flush=True)
    elif ninja:
        src = [w for w in line.split() if w.endswith((".cpp", ".cu"))]
        if src:
            name = "csrc/" + src[-1].split("/csrc/")[-1]
            print(f"    compiled {ninja.group(0)}{name} ({took})", flush=True)
    elif " -shared " in line:
        print(f"    linking posext._C ({took})", flush=True)
'
if ! "$VENV_PYTHON" -m pip install -v --no-build-isolation -e . 2>&1 | tee "$log" \
    | "$VENV_PYTHON" -c "$progress_filter"; then
  echo "bootstrap: building posext failed; the end of $log:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
step_done

# 4. the installed package, from outside the source tree
step "check: import posext and the posext command from outside the source tree"
(cd / && "$VENV_PYTHON" -c 'import json, posext; print("    posext:", json.dumps(posext.info()))')
test -x "$VENV/bin/posext"
step_done
echo "set-up done in $((SECONDS - setup_t0)) s. To use this environment in a shell: source $VENV/bin/activate"
