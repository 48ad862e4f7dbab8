# `make demo` and `make test` are all a fresh machine with Python 3.10+ and make needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: install test lint bench demo clean

install: $(STAMP)

# Re-installs only when the package metadata or the pinned versions change: a second run is instant.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check zoo tests benchmarks examples scripts

test: lint
	$(BIN)/python -m pytest -q

# Speed and memory against the peers, as ratios measured in the same run (never asserted in tests): every
# benchmark, then benchmarks/results.md and results.png. `make bench BENCH=--quick` for a smoke run.
bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH)

demo: install
	$(BIN)/zoo demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
