# The two commands: `make run` (API + one worker on 127.0.0.1:8000, or PORT, SQLite) and `make test`.
# For the edit-test loop: `make test-fast` (the suite less its `slow` tests) and `make lint`.
# empty: mlplab dev reads MLPLAB_PORT (.env too), 8000 by default
PORT ?=
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint fuzz bench clean

install: $(STAMP)

# torch first and pinned, from TORCH_INDEX when set: PyPI's Linux wheel is the multi-GB CUDA build, so
# elsewhere `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu` (as the Dockerfile does);
# this project's machines serve the CPU wheel from their own wheel house.
TORCH_INDEX ?=
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(VENV)/bin/mlplab dev $(if $(PORT),--port $(PORT))

# .ci/deps installs the Debian packages the tests drive (chromium, PostgreSQL, ...) when missing,
# starts PostgreSQL and prints the URL its tests read.
test: install
	@eval "$$(bash .ci/deps)"; $(PY) -m pytest

# The suite less its tests marked `slow` (live API and worker processes, real-MNIST training), a test
# process per core, each with one BLAS/OpenMP thread: threads enough for all of them would fight for the cores.
test-fast: install
	@eval "$$(bash .ci/deps)"; OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
		$(PY) -m pytest -m "not slow" -q -n auto --dist worksteal

# ruff's lint and format check on the whole tree; mypy, strict, on service/ and workers/ (pyproject.toml).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The API fuzzed from its OpenAPI document with many more cases than `make test` (25 per operation),
# a new seed each run. FUZZ_EXAMPLES=5000 make fuzz for a long one.
FUZZ_EXAMPLES ?= 500
fuzz: install
	MLPLAB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MLPLAB_FUZZ_RANDOM=1 $(PY) -m pytest tests/e2e/test_fuzz.py -q

bench: install
	$(PY) bench/train.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
