"""The MLflow Model Registry as a second registry backend, with the interface of :class:`ModelRegistry`.

Selected by a registry URL ``mlflow`` (``$MLFLOW_TRACKING_URI``), ``mlflow+http://host:port``
(``$INKLOOP_REGISTRY`` or ``--registry``), and by the references ``mlflow://name@alias``,
``mlflow://name@v3`` and ``models:/name@alias`` / ``models:/name/3`` wherever a model is asked for.

How inkloop's model maps onto MLflow's:

- a version is an MLflow model version of the registered model ``name``: the ONNX file logged with
  ``mlflow.onnx.log_model`` (signature from the model's inputs/outputs) in a run of the experiment
  ``inkloop-registry``; the checkpoint (``model.pt``), the card (``card.json``) and the gate's
  decision (``gate.json``) are artifacts of the same run under ``inkloop/``;
- the inkloop version name (``v3``, ``v3-int8``, or a name given at registration) is the version
  tag ``inkloop.version``; the tag ``inkloop.card`` is set last and commits the version (a version
  without it — an interrupted registration — is ignored, like a card-less folder);
- aliases are MLflow aliases (``production``, ``candidate``); the versions an alias pointed at
  before are kept in the registered-model tag ``inkloop.history.<alias>`` so rollback works;
- the card records the SHA-256 of the ONNX file *as stored by MLflow* and of ``model.pt``; every
  fetch, verify and promotion checks them, exactly as with the fsspec registry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inkloop.documents.hashing import sha256_file
from inkloop.models.references import ModelCard, ModelError, ModelRef
from inkloop.models.registry.base import AliasRecord, ModelRegistry, check_card_sha, files_of, registered_card
from inkloop.models.registry.cache import ModelCache
from inkloop.models.registry.files import mismatch
from inkloop.models.registry.refs import (
    AUTO_VERSION_RE,
    CARD_FILE,
    DEFAULT_ALIAS,
    MODEL_FILE,
    PT_FILE,
    check_name,
    default_cache_dir,
    version_sort_key,
)

logger = logging.getLogger(__name__)

EXPERIMENT = "inkloop-registry"
VERSION_TAG = "inkloop.version"
COMMIT_TAG = "inkloop.card"
#: Version tag: the MLflow run of the training the version came from (its card's ``extra.tracking``).
TRAINING_RUN_TAG = "inkloop.training_run"
HISTORY_TAG = "inkloop.history."
ARTIFACT_DIR = "inkloop"
_MAX_HISTORY = 100


#: Environment that keeps MLflow on this machine: no telemetry, no system-metrics sampling; and
#: off inkloop's stdout: no progress bars, no "View run … at: URL" line when a run ends (it would
#: break `--json` output; inkloop's commands report the run themselves).
OFFLINE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def offline_mlflow_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set (unless already set) MLflow's telemetry and system-metrics switches off in ``environ``
    (default ``os.environ``); return the environment."""
    env: Any = os.environ if environ is None else environ
    for key, value in OFFLINE_ENV.items():
        env.setdefault(key, value)
    if environ is None and "mlflow" in sys.modules:
        # mlflow decides on telemetry when imported; ask it again now that the switches are set.
        from mlflow.telemetry import set_telemetry_client

        set_telemetry_client()
    return dict(env)


_FLUENT_LOCK = threading.RLock()


@contextlib.contextmanager
def _fluent_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (``log_model``, ``models:/`` downloads) pointed at ``uri`` for the block only.

    ``mlflow.set_tracking_uri`` also writes ``MLFLOW_TRACKING_URI`` into the process environment
    (for subprocesses to inherit), and setting it back to none removes the variable again. Both
    are wrong here: left there, every later inkloop call in the process, and every child it
    starts, would track to this server; and removing a variable races with any thread reading the
    environment meanwhile (requests lists ``os.environ`` for proxies on every call, and got a
    ``KeyError`` for the removed variable in a registration running beside this one). The block
    starts no subprocess, so only the module's URI (what ``set_tracking_uri`` sets before it
    writes the environment, and what ``get_tracking_uri`` reads first) is set, and the
    environment is never touched. The URI is process-wide, so blocks of concurrent threads take
    turns (registrations are rare; the lock is held for one model's upload or download).
    """
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with _FLUENT_LOCK:
        before = tracking_utils._tracking_uri  # None unless someone set one
        tracking_utils._tracking_uri = uri
        try:
            yield
        finally:
            tracking_utils._tracking_uri = before


def is_mlflow_registry_url(url: str | os.PathLike[str] | None) -> bool:
    return url is not None and (str(url) == "mlflow" or str(url).startswith("mlflow+"))


def tracking_uri_of(url: str | None) -> str:
    """``mlflow+http://h:p`` → ``http://h:p``; ``mlflow``/None → ``$MLFLOW_TRACKING_URI``."""
    if url and url.startswith("mlflow+"):
        return url.removeprefix("mlflow+")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        raise ModelError(
            "an MLflow registry needs a tracking URI: set MLFLOW_TRACKING_URI or use mlflow+http://…"
        )
    return uri


def parse_mlflow_ref(ref: str) -> tuple[str, str]:
    """``mlflow://name@alias`` / ``mlflow://name@v3`` / ``models:/name@alias`` / ``models:/name/3``
    → (name, tag); an MLflow version number comes back as ``#3``."""
    head, _, number = ref.removeprefix("models:/").rpartition("/")
    if ref.startswith("models:/") and head and "/" not in head and number.isdigit():
        return head, f"#{number}"  # an MLflow version number, not an inkloop version name
    body = ref.removeprefix("mlflow://") if ref.startswith("mlflow://") else ref.removeprefix("models:/")
    name, sep, tag = body.partition("@")
    tag = tag if sep else DEFAULT_ALIAS
    try:
        check_name("model name", name)
        check_name("version or alias", tag)
    except ModelError as exc:
        raise ModelError(
            f"bad MLflow reference {ref!r}; expected mlflow://name@alias, mlflow://name@v3, "
            "models:/name@alias or models:/name/<number>"
        ) from exc
    return name, tag


def resolve_mlflow_ref(ref: str, registry_url: str | None = None) -> ModelRef:
    name, tag = parse_mlflow_ref(ref)
    return MlflowRegistry(registry_url).fetch(name, tag, ref=ref)


def _onnx_signature(path: Path) -> Any:
    """An MLflow signature from the ONNX graph's inputs and outputs (dynamic dimensions as -1)."""
    import numpy as np
    import onnx
    from mlflow.types.schema import Schema, TensorSpec

    model = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}

    def specs(values: Any) -> Schema:
        out = []
        for v in values:
            if v.name in init:
                continue
            t = v.type.tensor_type
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            out.append(TensorSpec(dtype, shape, v.name))
        return Schema(out)

    from mlflow.models.signature import ModelSignature

    return ModelSignature(inputs=specs(model.graph.input), outputs=specs(model.graph.output))


class MlflowRegistry(ModelRegistry):
    """A model registry on an MLflow tracking server (see the module docstring for the mapping)."""

    ref_scheme = "mlflow://"

    def __init__(
        self, url: str | None = None, *, cache_dir: str | os.PathLike[str] | None = None, **_: Any
    ) -> None:
        offline_mlflow_env()  # before mlflow is imported: it reads the telemetry switches on import
        try:
            from mlflow import MlflowClient
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise ModelError("the MLflow registry needs mlflow (pip install 'inkloop[experiments]')") from exc
        self.tracking_uri = tracking_uri_of(url)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.url = f"mlflow+{self.tracking_uri}"
        self.is_local = False
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self._card_cache: dict[tuple[str, str], ModelCard] = {}
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.url!r})"

    # ---------------------------------------------------------------- listing

    def _exists(self, name: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            return False
        return True

    def _mv_by_version(self, name: str) -> dict[str, Any]:
        """Committed MLflow model versions of ``name`` by inkloop version name."""
        out: dict[str, Any] = {}
        for mv in self.client.search_model_versions(f"name='{name}'"):
            tags = mv.tags or {}
            if COMMIT_TAG in tags and VERSION_TAG in tags:
                out[tags[VERSION_TAG]] = mv
        return dict(sorted(out.items(), key=lambda kv: version_sort_key(kv[0])))

    def list_models(self) -> list[str]:
        names = [m.name for m in self.client.search_registered_models(max_results=1000)]
        return sorted(n for n in names if self._mv_by_version(n))

    def _version_names(self, name: str) -> list[str]:
        return list(self._mv_by_version(name))

    def _require_model(self, name: str) -> dict[str, Any]:
        versions = self._mv_by_version(name)
        if not versions:
            self._require_names(name)  # raises the error naming the known models
        return versions

    def _version_of_number(self, name: str, number: str) -> str:
        for v, mv in self._require_model(name).items():
            if str(mv.version) == number:
                return v
        raise ModelError(f"registry {self.url}: {name} has no complete MLflow version {number}")

    def aliases(self, name: str) -> dict[str, str]:
        versions = self._require_model(name)
        by_number = {str(mv.version): v for v, mv in versions.items()}
        rm = self.client.get_registered_model(name)
        raw = rm.aliases or {}
        items = raw.items() if isinstance(raw, dict) else ((a.alias, a.version) for a in raw)
        return dict(sorted((a, by_number[str(n)]) for a, n in items if str(n) in by_number))

    def alias_record(self, name: str, alias: str) -> AliasRecord | None:
        check_name("model name", name)
        check_name("alias", alias)
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None
        version = (mv.tags or {}).get(VERSION_TAG)
        if version is None or COMMIT_TAG not in (mv.tags or {}):
            raise ModelError(
                f"registry {self.url}: alias {name}@{alias} points to MLflow version {mv.version}, "
                "which is not a complete inkloop version"
            )
        rm = self.client.get_registered_model(name)
        history = json.loads((rm.tags or {}).get(HISTORY_TAG + alias, "[]"))
        return AliasRecord(version=version, updated_at="", history=list(history))

    # -------------------------------------------------------------- resolving

    def resolve_version(self, name: str, version_or_alias: str = DEFAULT_ALIAS) -> str:
        """As :meth:`ModelRegistry.resolve_version`; ``#3`` (from ``models:/name/3``) is MLflow version 3."""
        if version_or_alias.startswith("#"):
            check_name("model name", name)
            return self._version_of_number(name, version_or_alias[1:])
        return super().resolve_version(name, version_or_alias)

    def _require_version(self, name: str, version: str) -> tuple[Any, ModelCard]:
        versions = self._require_model(name)
        mv = versions.get(version)
        if mv is None:
            raise ModelError(
                f"registry {self.url}: model {name!r} has no version {version!r} "
                f"(versions: {', '.join(versions)})"
            )
        key = (name, version)
        if key not in self._card_cache:
            with tempfile.TemporaryDirectory() as tmp:
                path = self.client.download_artifacts(mv.run_id, f"{ARTIFACT_DIR}/{CARD_FILE}", tmp)
                self._card_cache[key] = ModelCard.from_dict(json.loads(Path(path).read_text()))
        return mv, self._card_cache[key]

    def show(self, name: str, version_or_alias: str = DEFAULT_ALIAS) -> ModelCard:
        return self._require_version(name, self.resolve_version(name, version_or_alias))[1]

    # -------------------------------------------------------------- files

    def _download(self, mv: Any, fname: str, dest_dir: Path) -> Path:
        """Download one file of a version into ``dest_dir``; the ONNX from the model, others from the run."""
        import mlflow.artifacts

        dest_dir.mkdir(parents=True, exist_ok=True)
        try:
            if fname == MODEL_FILE:
                # `models:/` URIs resolve through the fluent registry URI, not `tracking_uri`.
                with _fluent_tracking_uri(self.tracking_uri):
                    got = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"models:/{mv.name}/{mv.version}",
                        dst_path=str(dest_dir / "mlmodel"),
                        tracking_uri=self.tracking_uri,
                    )
                return Path(got) / MODEL_FILE
            return Path(self.client.download_artifacts(mv.run_id, f"{ARTIFACT_DIR}/{fname}", str(dest_dir)))
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise ModelError(
                f"{mv.name}@{mv.tags.get(VERSION_TAG)}: cannot download {fname} ({exc})"
            ) from exc

    def verify(self, name: str, version: str, files: list[str] | None = None) -> ModelCard:
        mv, card = self._require_version(name, version)
        expected = files_of(card)
        with tempfile.TemporaryDirectory() as tmp:
            for fname in files if files is not None else list(expected):
                if fname not in expected:
                    raise ModelError(f"{name}@{version} has no file {fname!r} (files: {', '.join(expected)})")
                path = self._download(mv, fname, Path(tmp) / fname.replace(".", "_"))
                actual = sha256_file(path)
                if actual != expected[fname]:
                    raise mismatch(f"{self.url} {name}@{version}/{fname}", expected[fname], actual)
        return card

    def _card_of(self, name: str, version: str) -> ModelCard:
        return self._require_version(name, version)[1]

    def _fetch_files(
        self, name: str, version: str, card: ModelCard, wanted: list[str], label: str
    ) -> ModelRef:
        """Copies cached by registry, name, version and SHA-256; downloaded again when a check fails."""
        mv = self._mv_by_version(name)[version]
        expected = files_of(card)
        dest = ModelCache(self.cache_dir, self.url).folder(name, version, expected[MODEL_FILE])
        dest.mkdir(parents=True, exist_ok=True)
        for fname in wanted:
            target = dest / fname
            if target.is_file() and sha256_file(target) == expected[fname]:
                continue
            with tempfile.TemporaryDirectory(dir=dest) as tmp:
                got = self._download(mv, fname, Path(tmp))
                actual = sha256_file(got)
                if actual != expected[fname]:
                    raise mismatch(f"{self.url} {name}@{version}/{fname}", expected[fname], actual)
                os.replace(got, target)
        ModelCache.put_card(dest, card)
        return ModelRef(path=dest / MODEL_FILE, card=card, ref=label)

    def write_file(self, name: str, version: str, filename: str, data: bytes) -> str:
        """Store a small file beside a version (the gate's decision); return where it went."""
        mv, _ = self._require_version(name, version)
        self.client.log_text(mv.run_id, data.decode(), f"{ARTIFACT_DIR}/{filename}")
        return f"{self.url} runs:/{mv.run_id}/{ARTIFACT_DIR}/{filename}"

    def read_file(self, name: str, version: str, filename: str) -> bytes | None:
        mv, _ = self._require_version(name, version)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(mv.run_id, f"{ARTIFACT_DIR}/{filename}", tmp)
            except Exception:
                return None
            return Path(path).read_bytes()

    # ---------------------------------------------------------------- aliases

    def _store_alias(self, name: str, alias: str, record: AliasRecord) -> None:
        """The history first (a tag), then the alias itself: a crash in between leaves the alias as it was."""
        mv = self._mv_by_version(name)[record.version]
        self.client.set_registered_model_tag(name, HISTORY_TAG + alias, json.dumps(record.history))
        self.client.set_registered_model_alias(name, alias, str(mv.version))

    # ------------------------------------------------------------ registering

    def _next_version(self, name: str) -> str:
        numbers = [int(m.group(1)) for v in self._mv_by_version(name) if (m := AUTO_VERSION_RE.match(v))]
        if self._exists(name):
            numbers += [int(mv.version) for mv in self.client.search_model_versions(f"name='{name}'")]
        return f"v{max(numbers, default=0) + 1}"

    def _check_new_version(self, name: str, version: str) -> None:
        existing = self._mv_by_version(name)
        if version in existing:
            raise ModelError(f"registry {self.url}: {name}@{version} already exists; versions are immutable")
        if existing and self.alias_record(name, version) is not None:
            raise ModelError(
                f"registry {self.url}: {name} has an alias named {version!r}; pick another version"
            )

    def _register_sources(
        self, name: str, sources: dict[str, Path], card: ModelCard, version: str | None
    ) -> str:
        """Log the ONNX file (with its signature) as an MLflow model, register it, attach the card."""
        import mlflow
        import mlflow.onnx
        import onnx

        check_card_sha(card, name, sha256_file(sources[MODEL_FILE]))
        if not self._exists(name):
            from mlflow.exceptions import MlflowException

            with contextlib.suppress(MlflowException):  # created meanwhile by someone else
                self.client.create_registered_model(name)
        if self._experiment_id is None:
            exp = self.client.get_experiment_by_name(EXPERIMENT)
            self._experiment_id = exp.experiment_id if exp else self.client.create_experiment(EXPERIMENT)
        exp_id = self._experiment_id
        run = self.client.create_run(exp_id, run_name=f"register-{name}", tags={"inkloop.model": name})
        run_id = run.info.run_id
        try:
            # A fresh proto each time: log_model moves weights out of the object it is given.
            proto = onnx.load(str(sources[MODEL_FILE]))
            with (
                _fluent_tracking_uri(self.tracking_uri),
                mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None),
            ):
                info = mlflow.onnx.log_model(
                    proto,
                    name="model",
                    signature=_onnx_signature(sources[MODEL_FILE]),
                    save_as_external_data=False,
                    pip_requirements=["onnx", "onnxruntime"],  # no slow inference of requirements
                    onnx_execution_providers=["CPUExecutionProvider"],
                )
            if PT_FILE in sources:  # stored under its registry name, whatever the source is called
                with tempfile.TemporaryDirectory() as tmp:
                    staged = Path(tmp) / PT_FILE
                    shutil.copyfile(sources[PT_FILE], staged)
                    self.client.log_artifact(run_id, str(staged), ARTIFACT_DIR)
            mv = self.client.create_model_version(
                name, source=info.model_uri, run_id=run_id, model_id=getattr(info, "model_id", None)
            )
            target = version or f"v{mv.version}"
            if target in self._mv_by_version(name):
                raise ModelError(
                    f"registry {self.url}: {name}@{target} already exists; versions are immutable"
                )
            with tempfile.TemporaryDirectory() as tmp:
                stored = self._download(mv, MODEL_FILE, Path(tmp))
                hashes = {MODEL_FILE: sha256_file(stored)}
            if PT_FILE in sources:
                hashes[PT_FILE] = sha256_file(sources[PT_FILE])
            # Not checked against the card's sha256 again: log_model re-serialises the ONNX file,
            # the source was checked above.
            final = registered_card(card, name, target, hashes)
            final.extra["mlflow"] = {
                "version": str(mv.version),
                "run_id": run_id,
                "model_uri": info.model_uri,
            }
            self.client.log_text(
                run_id, json.dumps(final.to_dict(), indent=2) + "\n", f"{ARTIFACT_DIR}/{CARD_FILE}"
            )
            self.client.set_model_version_tag(name, str(mv.version), VERSION_TAG, target)
            trained_in = (final.extra.get("tracking") or {}).get("run_id")
            if trained_in:  # the run here only holds the files; the UI shows where the model came from
                self.client.set_model_version_tag(name, str(mv.version), TRAINING_RUN_TAG, trained_in)
            self.client.set_model_version_tag(name, str(mv.version), COMMIT_TAG, "1")  # the commit
            self.client.set_terminated(run_id, "FINISHED")
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        logger.info("%s: registered %s@%s (MLflow version %s)", self.url, name, target, mv.version)
        return target

    def purge_incomplete(self, dry_run: bool = False) -> list[str]:
        """MLflow versions without the commit tag (interrupted registrations); deleted unless ``dry_run``."""
        removed: list[str] = []
        for rm in self.client.search_registered_models(max_results=1000):
            for mv in self.client.search_model_versions(f"name='{rm.name}'"):
                if COMMIT_TAG not in (mv.tags or {}):
                    removed.append(f"{rm.name}/{mv.version}")
                    if not dry_run:
                        self.client.delete_model_version(rm.name, str(mv.version))
        return removed
