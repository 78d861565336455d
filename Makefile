# bitfold: `make demo` and `make test` set everything up first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bitfold-setup
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup demo test test-slow bench lint clean

setup: $(STAMP)

# torch==2.13.0 is a local CPU build: install it on its own, before anything that needs torch,
# so no unpinned torch (and gigabytes of CUDA wheels) is ever pulled in.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	command -v iverilog >/dev/null || (sudo -n true 2>/dev/null && SUDO=sudo; $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq iverilog) \
		|| echo "setup: could not install iverilog with apt-get; Icarus simulation tests will skip"
	touch $@

demo: setup
	$(BIN)/bitfold train --model mlp-digits --dataset digits --param holistic-tucker \
		--alpha learned --epochs 20 --out runs/demo

test: setup
	$(BIN)/python -m pytest -q -m "not slow or ci"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/golden_throughput.py
	$(BIN)/python -m benchmarks.hw_random_networks

lint: setup
	$(BIN)/ruff check bitfold train compiler hw sim boards tests benchmarks

clean:
	rm -rf runs build .pytest_cache
