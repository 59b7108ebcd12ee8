# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-repeat lint bench install clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required (set PYTHON=...)"; exit 1; }
	@echo "==> Creating $(VENV) with $(PYTHON) and installing PantheraHive"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/pantherahive serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# The whole suite N times in a row (default 3), to catch a flaky test: stops at the first
# failing test and says which run it was in.
N ?= 3
test-repeat: lint
	@for i in $$(seq 1 $(N)); do \
	  echo "==> test-repeat: run $$i of $(N)"; \
	  $(BIN)/pytest -x $(PYTEST_ARGS) || { echo "==> test-repeat: run $$i of $(N) FAILED"; exit 1; }; \
	done; \
	echo "==> test-repeat: all $(N) runs passed"

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
