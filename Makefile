# Everything runs from a private virtual environment made on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED_SCENARIOS := $(wildcard ../shared/scenarios/*.yaml)
OWN_SCENARIOS := $(wildcard tests/scenarios/*.yaml)

.PHONY: test lint typecheck unit scenarios gx-stack soak demo bench check clean gx-bundle

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint typecheck unit scenarios gx-stack

lint: $(STAMP)
	$(BIN)/ruff check hems_rules tests bench
	$(BIN)/ruff format --check hems_rules tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

# Every scenario through the real CLI, as a user would run it.
scenarios: $(STAMP)
	@fail=0; n=0; for f in $(SHARED_SCENARIOS) $(OWN_SCENARIOS); do \
	  n=$$((n+1)); \
	  if ! $(BIN)/hems-rules simulate "$$f" > /dev/null; then echo "FAILED: $$f"; fail=$$((fail+1)); fi; \
	done; echo "scenarios: $$((n-fail)) passed, $$fail failed"; test $$fail -eq 0

# The suite again on the GX's Python, dbus-fast, aiohttp and bundled packages, then a
# one-minute fault soak of `run` under the GX's softlimit.
gx-stack:
	SOAK= sh tests/gx_stack.sh

# The fault soak alone, longer: make soak SOAK=10m
SOAK ?= 10m
soak:
	SOAK=$(SOAK) sh tests/gx_stack.sh

check: $(STAMP)
	$(BIN)/hems-rules check rules

demo: $(STAMP)
	$(BIN)/hems-rules demo --rules rules

bench: $(STAMP)
	@for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-gx .mypy_cache .pytest_cache .ruff_cache

# Tarballs for a GX (armv7l: Cerbo GX, Ekrano; aarch64); needs PyPI.
gx-bundle: $(STAMP)
	PYTHON=$(BIN)/python install/bundle.sh
