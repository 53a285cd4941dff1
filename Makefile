# Every target sets up .venv first (python3 -m venv + pip install -e '.[dev]'), so each one
# works on a fresh machine. Real MNIST for runs and benchmarks: DATA_DIR (see README).
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= ../shared/data
RESULTS ?= results
BIN := $(VENV)/bin

.PHONY: setup run test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The main job: the exercise's whole study (single model, grid, random search, report).
STUDY_ARGS ?=
run: setup
	$(BIN)/mnistfc study jobs/study.toml --results $(RESULTS)/study --data-dir $(DATA_DIR) $(STUDY_ARGS)

# The whole suite: unit tests, real-MNIST (slow), real SLURM (cluster) and container tests,
# on two workers; the tests that install packages and start daemons share one of them
# (pytestmark xdist_group("system") in those modules).
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not cluster and not container"

lint: setup
	$(BIN)/ruff check mnistfc tests benchmarks
	$(BIN)/ruff format --check mnistfc tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

bench: setup
	$(BIN)/python benchmarks/bench_trial.py --data-dir $(DATA_DIR) --epochs 10
	$(BIN)/python benchmarks/bench_step.py --data-dir $(DATA_DIR)
	$(BIN)/python benchmarks/bench_aggregate.py --shards 10000
	$(BIN)/python benchmarks/bench_grid.py --data-dir $(DATA_DIR)
	$(BIN)/python benchmarks/bench_study.py --data-dir $(DATA_DIR) --results $(RESULTS)/bench-study $(STUDY_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
