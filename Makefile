# artsim: the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

export ARTSIM_HOME ?= $(CURDIR)/.artsim
export DAGSTER_HOME := $(CURDIR)
export DAGSTER_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# hnswlib builds from source on CPython 3.11; no -march=native so the wheel runs on any x86-64.
export HNSWLIB_NO_NATIVE := 1

.PHONY: install run test dev clean

install: $(STAMP)

# torch first (a local CPU build), then everything else with torch pinned as a constraint, so
# nothing can pull a multi-GB CUDA build (see ../shared/STACK-NOTES.md).
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	echo "$(TORCH_PIN)" > $(VENV)/torch-constraint.txt
	$(PY) -m pip install -q --disable-pip-version-check -c $(VENV)/torch-constraint.txt -e '.[prod,test]'
	$(PY) -m pip check
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/artsim materialize

# the browser tests drive Debian's Chromium, the prod-profile tests real PostgreSQL and Redis
# servers (Debian packages, installed here if missing; started on loopback by the tests); the
# layering contracts ([tool.importlinter] in pyproject.toml) are checked before the tests
test: $(STAMP)
	scripts/install-browser.sh
	scripts/install-services.sh
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

dev: $(STAMP)
	mkdir -p "$(ARTSIM_HOME)"
	scripts/dev.sh

clean:
	rm -rf "$(ARTSIM_HOME)"
