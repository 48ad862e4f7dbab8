# `make demo` and `make test` are all a fresh machine with Python 3.10+ and make needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export OMP_NUM_THREADS ?= 2

.PHONY: install test lint bench demo clean

install: $(STAMP)

# Re-installs only when the package metadata or the pinned versions change: a second run is instant.
# --no-cache-dir: PyPI's torch for x86_64 comes with several GB of CUDA wheels, and pip's cache would keep a
# second copy of each; on a machine with little disk free the install then fails part-way (Errno 28).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-cache-dir -c constraints.txt -e ".[dev]"
	touch $(STAMP)

lint: install
	$(BIN)/ruff check zoo tests benchmarks examples scripts

# pytest-xdist workers, one test file each at a time (--dist loadfile: a file's module fixtures are built once),
# the longest files first; tests/conftest.py orders them and gives each worker its share of the cores.
# `make test TEST_WORKERS=0` runs them all in one process.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Speed and memory against the peers, as ratios measured in the same run (never asserted in tests): every
# benchmark, then benchmarks/results.md and results.png. `make bench BENCH=--quick` for a smoke run.
bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH)

demo: install
	$(BIN)/zoo demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
