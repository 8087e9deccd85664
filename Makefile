# vmlab's commands. The README's set-up commands are `make lab`, `make test`, `make dashboard`;
# each creates .venv on a fresh machine that has only Python >= 3.10 and make (on Debian, as
# root, it installs python3-venv and chromium with apt-get when they are missing).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
LAB_PORT ?= 8888
DASHBOARD_PORT ?= 8866
# Token for `make lab` / `make dashboard`: VMLAB_TOKEN, else a fresh random one each start.
TOKEN = $${VMLAB_TOKEN:-$$($(PY) -c 'import secrets; print(secrets.token_hex(16))')}
# Strict nbval: stored text outputs are compared (docs/testing.md). Not in pyproject's addopts,
# so `pytest tests/<dir>` (with or without -p no:nbval) runs Python tests only.
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg
PYTEST_ARGS ?=
# Jupyter refuses to run as root without this (containers, a fresh Debian VM).
ROOT_OK = $$([ "$$(id -u)" = 0 ] && echo --allow-root)
APT := DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o=Dpkg::Use-Pty=0

.PHONY: lab test test-py nbval browser screenshots notebooks dashboard lint bench clean \
	browser-deps venv

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "vmlab needs Python >= 3.10")'
	@if ! $(PY) -m venv $(VENV) >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "python3 -m venv failed: installing Debian's python3-venv"; \
	    apt-get update -qq && $(APT) install python3-venv >/dev/null && $(PY) -m venv $(VENV); \
	  else \
	    echo "error: '$(PY) -m venv' failed; install python3-venv (Debian/Ubuntu) and retry" >&2; \
	    exit 1; \
	  fi; \
	fi
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip

venv: $(BIN)/python

# One stamp per set of extras; re-install when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[$(subst +,$(comma),$*)]'
	touch $@
comma := ,

lab: $(VENV)/.installed-lab
	@t=$(TOKEN); echo "JupyterLab: http://$(HOST):$(LAB_PORT)/lab?token=$$t"; \
	cd notebooks && exec ../$(BIN)/jupyter lab --no-browser --ServerApp.ip=$(HOST) \
	  --ServerApp.port=$(LAB_PORT) --IdentityProvider.token=$$t $(ROOT_OK)

dashboard: $(VENV)/.installed-lab+dashboard
	@test -f notebooks/dashboard.ipynb || { echo "notebooks/dashboard.ipynb does not exist yet" >&2; exit 1; }
	@t=$(TOKEN); echo "Dashboard: http://$(HOST):$(DASHBOARD_PORT)/?token=$$t"; \
	cd notebooks && exec ../$(BIN)/voila dashboard.ipynb --no-browser --Voila.ip=$(HOST) \
	  --port=$(DASHBOARD_PORT) --Voila.token=$$t

# Browser tests need Debian's chromium (never `playwright install`): install it where we are
# root and it is missing. Elsewhere the browser tests skip locally and fail in CI.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium (about 30 s)"; \
	    apt-get update -qq && $(APT) install chromium fonts-dejavu-core >/dev/null; \
	  else \
	    echo "warning: no chromium and not root: browser tests will skip (CI fails them)" >&2; \
	  fi; \
	fi

# Every test: unit and property tests, notebooks under strict nbval, JupyterLab and Voila in
# chromium; then ruff. Both always run; either failing fails the target.
test: $(VENV)/.installed-dev browser-deps
	@rc=0; \
	$(BIN)/python -m pytest $(NBVAL) $(PYTEST_ARGS) || rc=$$?; \
	$(BIN)/ruff check . || rc=1; \
	exit $$rc

test-py: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests --ignore=tests/browser $(PYTEST_ARGS)

nbval: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(NBVAL) notebooks $(PYTEST_ARGS)

browser: $(VENV)/.installed-dev browser-deps
	$(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

# Screenshots for the README and docs: the browser tests, writing into docs/screenshots/
# (by default they write into .ci-shots/, so committed images change only on purpose).
screenshots: $(VENV)/.installed-dev browser-deps
	VMLAB_SHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest tests/browser $(PYTEST_ARGS)

# Re-execute notebooks and keep only the text outputs nbval compares (docs/testing.md).
# `make notebooks NB=notebooks/03_insert.ipynb` for one.
NB ?= $(wildcard notebooks/*.ipynb)
notebooks: $(VENV)/.installed-dev
	$(BIN)/python tools/strip_widget_outputs.py $(NB)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

bench: $(VENV)/.installed-dev
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .ci-shots
