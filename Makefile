# Quickstart: `make bench` (benchmark vs the usual PyTorch / timm / NumPy paths: table + JSON + PNG in
# benchmarks/out/) and `make test` (the whole suite). Both do all set-up first (scripts/bootstrap.sh).
PYTHON ?= python3
export PYTHON

.PHONY: setup bench test
setup:
	bash scripts/bootstrap.sh
bench: setup
	$(PYTHON) -m posext.cli bench
test: setup
	$(PYTHON) -m pytest -q tests
