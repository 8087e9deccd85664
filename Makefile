# The README's two set-up commands: `make lab` and `make test`. Both create .venv on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test lint bench dashboard clean browser-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

lab: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --IdentityProvider.token=$${VMLAB_TOKEN:-$$(../$(BIN)/python -c 'import secrets;print(secrets.token_hex(16))')}

# Browser tests need Debian's chromium; install it where we are root and it is missing.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

test: $(STAMP) browser-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

dashboard: $(STAMP)
	cd notebooks && ../$(BIN)/voila dashboard.ipynb --no-browser --Voila.ip=127.0.0.1 --port=8866 \
	  --ServerApp.token=$${VMLAB_TOKEN:-$$(../$(BIN)/python -c 'import secrets;print(secrets.token_hex(16))')}

clean:
	rm -rf $(VENV) build *.egg-info
