# Quickstart: `make bench` (benchmark vs the usual PyTorch / timm / NumPy paths: table + JSON + PNG in
# benchmarks/out/) and `make test` (the whole suite). Both do all set-up first (scripts/bootstrap.sh): the
# project virtualenv .venv, its dependencies, and posext installed into it in editable mode (posext._C built).
# PYTHON is the interpreter .venv is made from; everything then runs in .venv.
PYTHON ?= python3
VENV ?= .venv
export PYTHON VENV

.PHONY: setup bench test lint sdist check-sdist
setup:
	bash scripts/bootstrap.sh
bench: setup
	$(VENV)/bin/posext bench
test: setup
	$(VENV)/bin/python -m pytest -q tests
# ruff (pinned in requirements-dev.txt) with the rules and line length of pyproject.toml; `python -m ruff`, as
# .venv/bin/ruff exists only where pip installed ruff into .venv rather than reusing the interpreter's
lint: setup
	$(VENV)/bin/python -m ruff check .
# dist/posext-<version>.tar.gz
sdist: setup
	$(VENV)/bin/python -m build --sdist --no-isolation
# minutes: a CPU-only wheel built from a fresh sdist, installed and imported outside the tree
check-sdist: setup
	POSEXT_TEST_WHEEL_FROM_SDIST=1 $(VENV)/bin/python -m pytest -q tests/test_packaging_wheel.py
