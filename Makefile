# otpylib: `make demo` runs the multi-node demo, `make test` runs every check.
# Both create .venv on first use with only Python 3.11+ and make on the machine.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Runs a command inside a fresh network namespace with only loopback up,
# when the machine allows it (see scripts/netns-run).
NETNS := scripts/netns-run

.PHONY: all venv test lint typecheck pytest soak demo bench bench-curves clean

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "otpylib needs Python 3.11 or newer, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,uvloop,metrics]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check otpylib otpylib_dist tests examples bench scripts
	$(BIN)/ruff format --check otpylib otpylib_dist tests examples bench scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy --strict -p otpylib -p otpylib_dist

pytest: $(STAMP)
	$(NETNS) $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# Long reliability runs (tests/reliability, incl. the `slow` tests: 10 million
# messages, 5,000 links and monitors) and 100k hypothesis examples over
# framing, handshake and codec (8 fuzz tests x 12,500). Takes tens of minutes.
SOAK_FUZZ_EXAMPLES ?= 12500
soak: $(STAMP)
	OTPY_FUZZ_EXAMPLES=$(SOAK_FUZZ_EXAMPLES) $(NETNS) $(BIN)/python -m pytest -q -m 'slow or not slow' \
		tests/reliability tests/otpylib_dist/protocol/test_fuzz.py $(PYTEST_ARGS)

demo: $(STAMP)
	$(NETNS) $(BIN)/python -m examples.demo

bench: $(STAMP)
	$(NETNS) $(BIN)/python -m bench.local
	$(NETNS) $(BIN)/python -m bench.dist --compare-spin
	$(NETNS) $(BIN)/python -m bench.gen_server --uvloop

# The longer curves (sizes, live processes, mesh size, CPU hogs): see docs/bench.md.
bench-curves: $(STAMP)
	$(NETNS) $(BIN)/python -m bench.sizes
	$(NETNS) $(BIN)/python -m bench.scale
	$(NETNS) $(BIN)/python -m bench.dist --hogs 2 --repeat 3

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
