"""Shared fixtures: paths to the committed sample documents and pages, offline environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# First, before any test module imports a library: importing inkloop sets its usage-data switches
# (inkloop.privacy). `import pymupdf` loads onnxruntime (pymupdf.layout), whose import starts its
# telemetry unless ORT_DISABLE_TELEMETRY is set by then: a pytest process that imported
# tests/badfiles.py first wrote ~/.cache/Microsoft/DeveloperTools/.onnxruntime.
import inkloop  # noqa: F401

if TYPE_CHECKING:
    from inkloop.devservers.labelstudio.server import LabelStudioHandle

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

# Nothing in the test suite may reach a hub: fail fast instead of waiting for timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))
# One FiftyOne database for the whole suite (FiftyOne attaches to any running one of this user).
os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(ROOT / ".cache" / "fiftyone-db"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
# The suite writes nothing in the user's home (each of these appeared there after a run): the
# registry's fetch cache (~50 MB of model copies a run, under pytest's rotated temp folders, set per
# worker below), matplotlib's font cache, PyTriton's workspace, Airflow's logs folder when a test
# imports Airflow; Label Studio's id file goes to its data dir (inkloop.devservers), the browser's
# profile to the test's temp folder (the ``chromium`` fixture).
os.environ.setdefault("MPLCONFIGDIR", str(ROOT / ".cache" / "matplotlib"))
os.environ.setdefault("PYTRITON_HOME", str(ROOT / ".cache" / "pytriton"))
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".cache" / "airflow-home"))
# Trainings get one torch thread each: `make test` already runs more workers than the machine has
# cores (a training job alone on a worker gets every CPU; inkloop.lifecycle.training_threads).
os.environ.setdefault("INKLOOP_TRAIN_THREADS", "1")

# Test files, longest first (seconds of work measured on the 2-core machine, `--durations=0`;
# docs/development.md). `make test` hands whole files to its xdist workers in collection order
# (`--dist loadfile --no-loadscope-reorder`): starting the long ones first lets the workers end
# together. xdist's own reorder (most tests first) started the whole-loop test (one test, two
# minutes) last. Files not named here run after these, in their usual order.
LONGEST_FIRST = (
    "test_deploy.py",  # ~230 s: a distributed Airflow, worker kills
    "test_experiments.py",  # ~160 s: MLflow server, retrain DAG, sweeps
    "test_loop_e2e.py",  # ~120 s: the whole loop in Airflow
    "test_airflow_dags.py",  # ~80 s
    "test_lifecycle.py",  # ~75 s
    "test_ml_backend.py",  # ~130 s: Label Studio, an Airflow API server, a browser, Triton
    "test_labelstudio_storage.py",  # ~70 s: Label Studio (two), moto, a browser
    "test_serving.py",  # ~70 s: Triton
    "test_curation_storage.py",  # ~70 s: moto, FiftyOne, a tiny training, export and gate
    "test_loop_simulation.py",  # ~65 s
    "test_curate.py",  # ~50 s: FiftyOne
    "test_review.py",  # ~40 s: Label Studio
    "test_registry.py",  # ~40 s
    "test_privacy.py",  # ~30 s
)


@pytest.fixture(scope="session", autouse=True)
def _registry_cache_out_of_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ.setdefault("INKLOOP_REGISTRY_CACHE", str(tmp_path_factory.getbasetemp() / "registry-cache"))


@pytest.fixture
def chromium(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Debian's chromium (``.ci/install-chromium.sh`` installs it when missing) and the environment
    to start it with: its profile and caches in the test's folder, not in ~/.config and ~/.cache."""
    if shutil.which("chromium") is None:
        subprocess.run(["bash", str(ROOT / ".ci" / "install-chromium.sh")], check=True, timeout=900)
    path = shutil.which("chromium")
    assert path, "chromium is missing after .ci/install-chromium.sh"
    xdg = str(tmp_path / "xdg")
    return path, {**os.environ, "XDG_CONFIG_HOME": xdg, "XDG_CACHE_HOME": xdg}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file keeps its order


@pytest.fixture(scope="session")
def documents_dir() -> Path:
    return FIXTURES / "documents"


@pytest.fixture(scope="session")
def pages_dir() -> Path:
    return FIXTURES / "pages"


# --------------------------------------------------------------------------------------------
# A real Label Studio server (tests marked ``labelstudio``)


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioHandle]:
    """A real Label Studio server on a free 127.0.0.1 port with a fresh data dir, per session.

    Why real: review pushes and pulls depend on what the server accepts and returns, which a
    mock would only guess. The first run on a machine installs Label Studio into its own venv
    (about 2 minutes) so the test command works from nothing, and migrates an empty database
    once (40-90 s); later sessions copy the template data dir and start in seconds.
    If the install or the start is impossible the fixture FAILS rather than skips: a skipped
    integration test reads as green and hides a broken setup. The server runs with Label Studio's
    own auth defaults (legacy tokens off); the handle's ``.token`` is the admin's Personal Access
    Token, so every test authenticates as a user of a stock Label Studio 1.23 does. Yields a handle
    with ``.url`` and ``.token``; only the server's own PID (its process group) is stopped at the end.
    """
    from inkloop import net
    from inkloop.devservers.labelstudio import server, settings, venv

    try:
        venv.ensure_venv()
    except settings.LabelStudioServerError as exc:
        pytest.fail(f"cannot set up Label Studio: {exc}", pytrace=False)
    data_dir = tmp_path_factory.mktemp("labelstudio-data")
    document_root = tmp_path_factory.mktemp("labelstudio-files")
    handle: LabelStudioHandle | None = None
    for attempt in range(3):  # a free port can be taken between finding and using it
        try:
            handle = server.start(net.free_port(), data_dir, document_root=document_root)
            break
        except settings.PortInUseError:
            if attempt == 2:
                raise
        except settings.LabelStudioServerError as exc:
            pytest.fail(f"cannot start Label Studio: {exc}", pytrace=False)
    assert handle is not None
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def labelstudio_local_calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioHandle]:
    """A Label Studio that may call services on 127.0.0.1: ML backends, webhooks, an S3 endpoint.

    Stock settings otherwise (legacy tokens off, the admin's Personal Access Token). Label Studio
    refuses loopback and private addresses by default (``ML_BLOCK_LOCAL_IP``,
    ``SSRF_PROTECTION_ENABLED``); the services these tests start listen on 127.0.0.1 only, so
    this server is told to allow them. Shared by the ML-backend and S3-storage tests."""
    from inkloop import net
    from inkloop.devservers.labelstudio import server, settings, venv

    try:
        venv.ensure_venv()
        handle = server.start(
            net.free_port(),
            tmp_path_factory.mktemp("ls-local-data"),
            document_root=tmp_path_factory.mktemp("ls-local-files"),
            extra_env={"ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"},
        )
    except settings.LabelStudioServerError as exc:
        pytest.fail(f"cannot start Label Studio: {exc}", pytrace=False)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real MLflow tracking server (SQLite backend, local artifacts) on 127.0.0.1, per session.

    Yields ``(url, data_dir)``; fails (not skips) when mlflow is missing or the server cannot start.
    About 30 s to start; stopped by its process group at the end.
    """
    try:
        from inkloop.devservers.mlflow import MlflowServerError, start, stop
    except ImportError as exc:
        pytest.fail(f"mlflow is not installed: {exc}", pytrace=False)
    data_dir = tmp_path_factory.mktemp("mlflow-server")
    try:
        handle = start(data_dir)
    except MlflowServerError as exc:
        pytest.fail(f"cannot start MLflow: {exc}", pytrace=False)
    try:
        yield handle.url, data_dir
    finally:
        stop(handle)
