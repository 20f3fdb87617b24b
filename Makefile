# Two entry points for a fresh clone: `make demo` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: venv demo test test-all test-avx2 bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# The main job on this machine: the zoo report (every published architecture, exact counts),
# then the demo training run (mobilenetv2_035 on the embedded MNIST images, about a minute).
demo: venv
	$(BIN)/python -m nas.zoo
	$(BIN)/python -m nas.train

# Default test run (no `slow` tests), two workers.
test: venv
	$(BIN)/python -m pytest -q -n 2

# Everything, the slow tests included.
test-all: venv
	$(BIN)/python -m pytest -q -n 2 -m ""

# The default run on the kernels of a CPU without AVX-512 (torch, oneDNN and numpy capped at
# AVX2; as on AMD Zen 2/3 or Intel desktop parts): float paths other than this machine's.
test-avx2: venv
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
	NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR" \
	$(BIN)/python -m pytest -q -n 2

bench: venv
	$(BIN)/python scripts/bench_cost.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
