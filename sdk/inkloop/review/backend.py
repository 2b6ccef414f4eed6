"""``inkloop review backend``: a Label Studio ML backend serving the production model.

Why it exists: tasks pushed by ``inkloop review push`` carry the predictions of the model that ran
detection; after a promotion they keep the old boxes, a task imported by hand has none, and an
annotator cannot ask for fresh ones. Label Studio's own answer is an *ML backend*, connected in a
project's *Model* settings (or ``POST /api/ml``). This module speaks the protocol Label Studio
1.23's connector (``label_studio/ml/api_connector.py``, ``MLApi``) uses, directly, with Starlette
and uvicorn (already in the Airflow and demo installs; ``label-studio-ml`` on PyPI is from 2023):

``GET /health``
    ``{"status": "UP", "model_class": …, "model_version": …}``; Label Studio calls it before
    anything else (1 s timeout, ``ML_TIMEOUT_HEALTH``) and reads a 401 as "wrong credentials".
``POST /setup``
    ``{"project": "<id>.<created>", "schema": <labeling config>, "hostname": …, "access_token": …}``
    → ``{"model_version": "signature-detector@v3"}``. Label Studio records the version it reports.
``POST /predict``
    ``{"tasks": [<task>…], "project": …, "label_config": …}`` → ``{"results": [<prediction>…],
    "model_version": …}``, one prediction per task, in order. A task whose image cannot be read is
    left out of a batch (Label Studio then asks again one task at a time) and a one-task request
    for it gets 422 naming the image: Label Studio stores no prediction rather than an empty one
    that would read as "no signature here".
``GET /versions``
    ``{"versions": [<the version served now>]}`` for the project settings' version list.
``POST /webhook``
    Label Studio's events. ``START_TRAINING`` (the *Start training* button) starts the loop's
    training path in Airflow; ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` / ``ANNOTATIONS_CREATED``
    publish the ``inkloop_reviews`` Asset so the review sync runs without polling. Other actions
    (Label Studio sends every action to a backend's webhook) get 200 ``ignored``.
``POST /train``
    What older connectors call for *Start training*: the same as ``START_TRAINING``.

Predictions come from :func:`inkloop.convert.labelstudio.prediction`, the conversion pushed tasks
use, with ``model_version`` and per-box scores; the region names (``from_name``/``to_name``) and
the image field are read from the project's labeling config, so a project with other tag names
works too.

The model is any reference :func:`inkloop.models.resolve.resolve_model` accepts (default
``registry://signature-detector@production``; ``bundled``; a path; ``triton://…``). For an alias
(``registry://name@production``, ``mlflow://name@production``) the registry is asked for the version
alone after ``alias_ttl`` seconds; the model is fetched only when the alias moved: the next request
then loads the new version, without a restart, and ``/setup`` and every prediction report it. A
registry that cannot be read keeps the loaded model serving (logged).

Task images are read however a task refers to them: Label Studio's own links (``/data/upload/…``,
``/data/local-files/?d=…``, presign/resolve links ``/tasks/<id>/presign/?fileuri=…``, or the same
on the server's full URL) with the review stage's authentication helper (a Personal Access Token
or a legacy token); a storage URL of a task (``s3://…``, what Label Studio sends for tasks of an
S3 source storage) first through Label Studio's resolve link for that task, so the project's
storage, which holds the bucket's credentials, presigns it and the backend needs none, then
through :mod:`inkloop.storage` with the backend's own credentials; other storage URLs
(``file://…``) and local paths through :mod:`inkloop.storage`; other ``http(s)://`` links as they
are (presigned bucket links carry their own signature), all through inkloop's one HTTP client
(:mod:`inkloop.net`). A redirect that leaves Label Studio's host (its 303 to a presigned bucket
URL) is followed without the ``Authorization`` header (that client's rule for every redirect):
the token stays with Label Studio, and S3 refuses a request signed twice.

Safe by default: it binds 127.0.0.1 unless told otherwise; every call needs HTTP basic auth (what
Label Studio's *Model* settings send) unless the backend was started with ``allow_anonymous``
explicitly; ``/webhook`` also accepts a shared secret in the ``X-Inkloop-Webhook-Secret`` header
(Label Studio's webhooks carry headers, not basic auth). A malformed or unknown payload gets a 4xx
and a log line; nothing a caller sends stops the server. Training never runs in this process: the
backend asks Airflow, in a background thread, and answers at once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import queue
import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from inkloop.convert.labelstudio import prediction
from inkloop.net import http_request
from inkloop.retry import Backoff, retry
from inkloop.review.airflow_api import AirflowAPI, AirflowAPIError
from inkloop.review.auth import LabelStudioAuth

if TYPE_CHECKING:  # the model stack loads when the first prediction is asked for
    from inkloop.detection.detector import Detector
    from inkloop.models.registry import ModelRegistry

log = logging.getLogger(__name__)

DEFAULT_MODEL = "registry://signature-detector@production"
WEBHOOK_SECRET_HEADER = "X-Inkloop-Webhook-Secret"
#: Label Studio's webhook actions that mean "a review was finished or changed".
REVIEW_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"})
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_BODY_BYTES = 32 * 1024 * 1024


class BadRequest(ValueError):
    """A request the backend cannot serve; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class TrainingPath:
    """What *Start training* and review events start in Airflow.

    ``curate_dag`` (pull, curate, export the finished reviews; its export publishes
    ``inkloop_training_data``, which schedules ``inkloop_retrain``) is triggered with
    ``{"min_reviewed": 0, "reason": "start training"}``, so training always runs on the reviews
    of the moment, never on an export made before them. Review events publish ``reviews_asset``.
    """

    airflow: AirflowAPI
    project: str = "inkloop review"
    curate_dag: str = "inkloop_review_curate"
    reviews_asset: str = "inkloop_reviews"


@dataclass
class BackendConfig:
    """Everything the backend serves with; the CLI fills it from options and the environment."""

    model: str = DEFAULT_MODEL
    username: str | None = "inkloop"
    password: str | None = None
    webhook_secret: str | None = None
    allow_anonymous: bool = False
    labelstudio_url: str | None = None
    labelstudio_token: str | None = None
    alias_ttl: float = 10.0
    device: str = "cpu"
    threads: int | None = None
    training: TrainingPath | None = None

    def check(self) -> None:
        if not self.allow_anonymous and not (self.username and self.password):
            raise ValueError(
                "the ML backend needs a basic-auth user and password (INKLOOP_BACKEND_PASSWORD) "
                "or, explicitly, allow_anonymous (--no-auth)"
            )


# -- the model, following its alias ------------------------------------------------------------
class ModelServer:
    """The detector for a model reference; for a registry alias, the version the alias names now.

    Detectors are built lazily and swapped under a lock; a request holds the detector it started
    with, so a swap never changes a model under a running inference."""

    def __init__(self, ref: str, *, alias_ttl: float = 10.0, device: str = "cpu", threads: int | None = None):
        from inkloop.models.registry import is_registry_ref

        self.ref = ref
        self.alias_ttl = alias_ttl
        self.device = device
        self.threads = threads
        self._lock = threading.Lock()
        self._detector: Detector | None = None
        self._version: str | None = None  # the registry version loaded (alias refs)
        self._opened: tuple[ModelRegistry, str, str] | None = None  # (registry, name, tag): see _registry
        self._next_check = 0.0
        self.follows_alias = is_registry_ref(ref)
        self.swaps = 0

    def _registry(self) -> tuple[ModelRegistry, str, str] | None:
        """The registry, model name and tag of a registry reference (``registry://``, ``mlflow://``,
        ``models:/``), opened once: every alias check then asks it the version alone, and a model
        is fetched only when that version differs from the one served. None for other references."""
        if not self.follows_alias:
            return None
        if self._opened is None:
            from inkloop.models.resolve import open_registry_ref

            self._opened = open_registry_ref(self.ref)
        return self._opened

    def _registry_version(self) -> str | None:
        opened = self._registry()
        if opened is None:
            return None
        registry, name, tag = opened
        return str(registry.resolve_version(name, tag))

    def _load(self, version: str | None) -> Detector:
        from inkloop.detection.detector import Detector
        from inkloop.models.references import is_triton_ref

        if is_triton_ref(self.ref):
            return Detector(self.ref, device=self.device, threads=self.threads)
        opened = self._registry()
        if opened is not None and version is not None:  # exactly the version just resolved
            registry, name, _tag = opened  # (the alias may move meanwhile)
            model = registry.fetch(name, version, ref=self.ref)
        else:
            from inkloop.models.resolve import resolve_model

            model = resolve_model(self.ref)
        return Detector(model, device=self.device, threads=self.threads)

    def detector(self) -> Detector:
        """The detector to use now (loading it, or the alias's new version, when due)."""
        now = time.monotonic()
        if self._detector is not None and (not self.follows_alias or now < self._next_check):
            return self._detector
        with self._lock:
            if self._detector is not None and (not self.follows_alias or time.monotonic() < self._next_check):
                return self._detector
            try:
                version = self._registry_version()
                if self._detector is None or version != self._version:
                    fresh = self._load(version)
                    if self._detector is None or fresh.model_version != self._detector.model_version:
                        if self._detector is not None:
                            log.info(
                                "%s: now serving %s (was %s)",
                                self.ref,
                                fresh.model_version,
                                self._detector.model_version,
                            )
                            self.swaps += 1
                        self._detector = fresh
                    self._version = version
            except Exception as exc:
                if self._detector is None:
                    raise
                log.warning(
                    "%s: cannot check the alias (%s); still serving %s",
                    self.ref,
                    exc,
                    self._detector.model_version,
                )
            self._next_check = time.monotonic() + self.alias_ttl
            return self._detector

    @property
    def model_version(self) -> str:
        return str(self.detector().model_version)


# -- the labeling config -----------------------------------------------------------------------
@dataclass(frozen=True)
class LabelingNames:
    """Where predictions go in a project's labeling config: the rectangle tag, its image tag and
    the task field that holds the image (``$image`` → ``image``)."""

    from_name: str = "label"
    to_name: str = "image"
    image_field: str = "image"


def labeling_names(config: str | None) -> LabelingNames:
    """Read the names from a labeling config (XML); the defaults (inkloop's own config) when none
    is given. A config with no rectangle tag on an image cannot hold this model's boxes."""
    if not config:
        return LabelingNames()
    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise BadRequest(f"the labeling config is not XML: {exc}") from None
    images = {el.get("name"): el.get("value", "") for el in root.iter() if el.tag == "Image"}
    for el in root.iter():
        if el.tag in ("RectangleLabels", "Rectangle") and el.get("toName") in images:
            to_name = str(el.get("toName"))
            return LabelingNames(str(el.get("name")), to_name, images[to_name].lstrip("$") or "image")
    raise BadRequest(
        "the labeling config has no RectangleLabels on an Image: this backend predicts boxes on page images",
        status=422,
    )


# -- task images -------------------------------------------------------------------------------
_LS_PATHS = ("/data/", "/tasks/", "/storage-data/", "/api/")
#: Storage URLs a Label Studio import storage resolves (``/tasks/<id>/resolve/?fileuri=…``).
_LS_STORAGE_SCHEMES = ("s3://", "s3a://", "gs://", "azure-blob://")


class ImageReader:
    """Bytes of a task's image, however the task refers to it (see the module docstring)."""

    def __init__(self, labelstudio_url: str | None, token: str | None, timeout: float = 30.0) -> None:
        self.labelstudio_url = labelstudio_url.rstrip("/") if labelstudio_url else None
        self._auth = (
            LabelStudioAuth(self.labelstudio_url, token, timeout=timeout)
            if labelstudio_url and token
            else None
        )
        self._lock = threading.Lock()  # LabelStudioAuth is not thread-safe
        self.timeout = timeout

    def _from_labelstudio(self, path: str, ref: str) -> bytes:
        """GET a Label Studio path with its authentication; a redirect to a presigned bucket URL
        is followed without it. With a PAT, a 401 gets one fresh exchange and one retry."""
        if self._auth is None or self.labelstudio_url is None:
            raise BadRequest(
                f"image {ref!r} is served by Label Studio: start the backend with its URL and a token "
                "(--labelstudio-url, INKLOOP_LS_TOKEN)",
                status=422,
            )
        for attempt in (1, 2):
            with self._lock:
                headers = self._auth.headers()
            try:
                answer = http_request(
                    self.labelstudio_url + path,
                    headers=headers,
                    timeout=self.timeout,
                    limit=MAX_IMAGE_BYTES + 1,
                )
            except OSError as exc:
                raise BadRequest(
                    f"image {ref!r} cannot be read through Label Studio: {type(exc).__name__}: {exc}",
                    status=422,
                ) from None
            if answer.status < 400:
                return answer.body
            if answer.status == 401 and attempt == 1 and self._auth.personal:
                with self._lock:
                    self._auth.exchange()
                continue
            url = answer.url or self.labelstudio_url
            who = urllib.parse.urlsplit(url).netloc  # a presigned link's host: not its signature
            if url.startswith(self.labelstudio_url):
                who = "Label Studio"
            raise BadRequest(f"image {ref!r}: {who} answered HTTP {answer.status}", status=422)
        raise AssertionError("unreachable")

    def _resolve_link(self, ref: str, task_id: Any) -> str | None:
        """Label Studio's link for a storage URL of a task (its import storage presigns it)."""
        if self._auth is None or not isinstance(task_id, int) or not ref.startswith(_LS_STORAGE_SCHEMES):
            return None
        fileuri = base64.urlsafe_b64encode(ref.encode()).decode()
        return f"/tasks/{task_id}/resolve/?fileuri={urllib.parse.quote(fileuri)}"

    def read(self, ref: str, task_id: int | None = None) -> bytes:
        """The image ``ref`` of task ``task_id``. A storage URL (``s3://…``) is asked of Label
        Studio first when the backend knows it (the project's storage holds the credentials and
        presigns the object; the backend needs none), then read through :mod:`inkloop.storage`
        (the backend's own credentials: environment, fsspec configuration)."""
        if not isinstance(ref, str) or not ref.strip():
            raise BadRequest("the task has no image reference", status=422)
        if ref.startswith(_LS_PATHS):
            data = self._from_labelstudio(ref, ref)
        elif self.labelstudio_url and ref.startswith(self.labelstudio_url + "/"):
            data = self._from_labelstudio(ref[len(self.labelstudio_url) :], ref)
        else:
            data = self._direct(ref, task_id)
        if len(data) > MAX_IMAGE_BYTES:
            raise BadRequest(f"image {ref!r} is larger than {MAX_IMAGE_BYTES} bytes", status=422)
        return data

    def _direct(self, ref: str, task_id: int | None) -> bytes:
        from inkloop.storage import StorageError, read_bytes

        via_labelstudio = ""
        link = self._resolve_link(ref, task_id)
        if link is not None:
            try:
                return self._from_labelstudio(link, ref)
            except BadRequest as exc:  # no storage of the project resolves it: our own credentials
                via_labelstudio = f" (through Label Studio: {exc})"
                log.info("task %s: %s; reading it directly", task_id, exc)
        try:
            if ref.startswith(("http://", "https://")):  # presigned links carry their own signature
                answer = http_request(ref, timeout=self.timeout, limit=MAX_IMAGE_BYTES + 1)
                if answer.status < 400:
                    return answer.body
                raise BadRequest(
                    f"image {ref!r} cannot be read: HTTP {answer.status}{via_labelstudio}", status=422
                )
            return read_bytes(ref)  # storage URLs (s3://, file://, …) and local paths
        except (OSError, StorageError) as exc:
            raise BadRequest(
                f"image {ref!r} cannot be read: {type(exc).__name__}: {exc}{via_labelstudio}", status=422
            ) from None


def decode_image(data: bytes, ref: str) -> np.ndarray:
    """RGB pixels of an encoded image (PNG, JPEG, TIFF's first page, …)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise BadRequest(f"image {ref!r} is not an image OpenCV can decode", status=422)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


# -- events to Airflow -------------------------------------------------------------------------
class EventForwarder:
    """Sends review events and training requests to Airflow from one background thread.

    Label Studio sends a webhook inside the API call that caused it, with a short timeout, so
    the endpoint only records what came and answers; this thread does the slow part. Review
    events that arrive while one is being published are folded into the next (one Asset event
    says "there are new reviews"; the sync reads them all). A refused or unreachable Airflow is
    tried ``attempts`` times with doubling pauses (an API server restarting takes seconds), then
    logged as an error; nothing is raised into a request. A review event that still fails loses
    no review: the next event's sync pulls everything since the last pull."""

    def __init__(self, training: TrainingPath, attempts: int = 4, base_delay: float = 1.0) -> None:
        self.training = training
        self.attempts = attempts
        self.base_delay = base_delay
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._pending_reviews: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.sent: list[tuple[str, str]] = []  # (what, Airflow's id for it): status and tests
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, name="inkloop-events", daemon=True)
        self._thread.start()

    @property
    def backoff(self) -> Backoff:
        """``attempts`` tries, pauses doubling from ``base_delay`` without a cap or jitter (one
        thread, one Airflow: no crowd to spread)."""
        return Backoff(attempts=self.attempts, first=self.base_delay, cap=float("inf"))

    def review_event(self, extra: dict[str, Any]) -> None:
        with self._lock:
            if self._pending_reviews is None:
                self._pending_reviews = {**extra, "events": 1}
                self._queue.put(("reviews", {}))
            else:
                self._pending_reviews["events"] += 1
                self._pending_reviews.update({k: v for k, v in extra.items() if k != "events"})

    def start_training(self, extra: dict[str, Any]) -> None:
        self._queue.put(("train", extra))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=15)

    def _send(self, what: str, extra: dict[str, Any]) -> str:
        if what == "reviews":
            event = self.training.airflow.publish_asset_event(self.training.reviews_asset, extra)
            log.info("published %s (%s)", self.training.reviews_asset, extra)
            return str(event.get("id", ""))
        conf = {"project": self.training.project, "min_reviewed": 0, **extra}
        run_id = self.training.airflow.trigger_dag(self.training.curate_dag, conf)
        log.info("training requested: %s run %s", self.training.curate_dag, run_id)
        return run_id

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            what, extra = item
            if what == "reviews":
                with self._lock:
                    extra, self._pending_reviews = dict(self._pending_reviews or {}), None
            try:
                sent = retry(
                    lambda what=what, extra=extra: self._send(what, extra),
                    self.backoff,
                    retryable=lambda exc: isinstance(exc, AirflowAPIError),
                    on_retry=lambda _n, exc, pause, what=what: log.warning(
                        "forwarding %s to Airflow failed (%s); retry in %.0f s", what, exc, pause
                    ),
                )
                self.sent.append((what, sent))
            except AirflowAPIError as exc:  # retryable: every attempt failed
                self.errors.append(str(exc))
                log.error("cannot forward %s to Airflow after %d attempts: %s", what, self.attempts, exc)
            except Exception as exc:  # never let the thread die on one bad event
                self.errors.append(f"{type(exc).__name__}: {exc}")
                log.exception("forwarding %s failed", what)


# -- the application ---------------------------------------------------------------------------
class MLBackend:
    """The protocol's logic, independent of the HTTP server (the Starlette app wraps it)."""

    def __init__(self, config: BackendConfig) -> None:
        config.check()
        self.config = config
        self.models = ModelServer(
            config.model, alias_ttl=config.alias_ttl, device=config.device, threads=config.threads
        )
        self.images = ImageReader(config.labelstudio_url, config.labelstudio_token)
        self.events = EventForwarder(config.training) if config.training else None
        self.projects: dict[str, dict[str, Any]] = {}  # what /setup told us, per project

    # authentication
    def authorized(self, headers: Any, *, webhook: bool = False) -> bool:
        if self.config.allow_anonymous:
            return True
        if webhook and self.config.webhook_secret:
            given = headers.get(WEBHOOK_SECRET_HEADER.lower()) or ""
            if hmac.compare_digest(given.encode(), self.config.webhook_secret.encode()):
                return True
        auth = headers.get("authorization") or ""
        if not auth.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(
            user.encode(), (self.config.username or "").encode()
        ) and hmac.compare_digest(password.encode(), (self.config.password or "").encode())

    # protocol
    def health(self) -> dict[str, Any]:
        return {"status": "UP", "model_class": "InkloopDetector", "model": self.config.model}

    def setup(self, body: dict[str, Any]) -> dict[str, Any]:
        names = labeling_names(_opt_str(body, "schema"))
        project = _opt_str(body, "project") or ""
        self.projects[project] = {"names": names, "hostname": _opt_str(body, "hostname")}
        return {"model_version": self.models.model_version}

    def versions(self) -> dict[str, Any]:
        """``GET /versions`` (the project settings' model-version list): the version served now."""
        return {"versions": [self.models.model_version]}

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a non-empty list of tasks")
        config = _opt_str(body, "label_config")
        project = _opt_str(body, "project") or ""
        names = (
            labeling_names(config)
            if config
            else self.projects.get(project, {}).get("names") or LabelingNames()
        )
        detector = self.models.detector()  # one model for the whole request
        version = str(detector.model_version)
        results: list[dict[str, Any]] = []
        failures: list[str] = []
        for task in tasks:
            data = task.get("data")
            ref = data.get(names.image_field) if isinstance(data, dict) else None
            try:
                image = self.images.read(ref, task.get("id"))  # type: ignore[arg-type]
                pixels = decode_image(image, str(ref))
            except BadRequest as exc:
                log.warning("task %s: %s", task.get("id"), exc)
                failures.append(str(exc))
                continue
            h, w = pixels.shape[:2]
            boxes = detector.detect([pixels])[0]
            results.append(prediction(boxes, w, h, version, names.from_name, names.to_name))
        if not results:
            raise BadRequest("; ".join(failures)[:1000], status=422)
        return {"results": results, "model_version": version}

    def webhook(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise BadRequest("the webhook payload has no 'action'")
        project = body.get("project") if isinstance(body.get("project"), dict) else {}
        extra = {"action": action, "labelstudio_project": project.get("id"), "title": project.get("title")}
        if action == "START_TRAINING":
            if self.events is None:
                raise BadRequest(
                    "training is not configured: start the backend with --airflow-url", status=409
                )
            request = {"reason": "start training", "labelstudio_project": project.get("id")}
            if isinstance(project.get("title"), str) and project["title"]:
                request["project"] = project["title"]  # the project whose button was pressed
            self.events.start_training(request)
            return 201, {"status": "training requested", "dag": self.events.training.curate_dag}
        if action in REVIEW_ACTIONS:
            if self.events is None:
                return 200, {"status": "ignored", "reason": "no Airflow configured"}
            self.events.review_event(extra)
            return 202, {"status": "review event queued", "asset": self.events.training.reviews_asset}
        return 200, {"status": "ignored", "action": action}


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"'{key}' must be a string")


_SAFE_LOG = re.compile(r"[^\x20-\x7e]")


def create_app(backend: MLBackend) -> Any:
    """The Starlette application for ``backend`` (what uvicorn serves)."""
    import json

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def _body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise BadRequest(f"request body over {MAX_BODY_BYTES} bytes", status=413)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def endpoint(
        handler: Callable[..., Any], *, needs_body: bool, webhook: bool = False
    ) -> Callable[..., Any]:
        async def run(request: Request) -> JSONResponse:
            where = f"{request.method} {request.url.path}"
            if not backend.authorized(request.headers, webhook=webhook):
                log.warning(
                    "%s from %s: refused (no or wrong credentials)",
                    where,
                    request.client.host if request.client else "?",
                )
                return JSONResponse(
                    {"error": "authentication required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="inkloop"'},
                )
            try:
                args = [await _body(request)] if needs_body else []
                answer = await run_in_threadpool(handler, *args)
            except BadRequest as exc:
                log.warning("%s: %s %s", where, exc.status, _SAFE_LOG.sub("?", str(exc))[:500])
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except Exception as exc:  # the model or the registry failed: the server stays up
                log.exception("%s failed", where)
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500)
            status = 200
            if isinstance(answer, tuple):
                status, answer = answer
            return JSONResponse(answer, status_code=status)

        return run

    routes = [
        Route("/health", endpoint(backend.health, needs_body=False), methods=["GET"]),
        Route("/", endpoint(backend.health, needs_body=False), methods=["GET"]),
        Route("/setup", endpoint(backend.setup, needs_body=True), methods=["POST"]),
        Route("/versions", endpoint(backend.versions, needs_body=False), methods=["GET"]),
        Route("/predict", endpoint(backend.predict, needs_body=True), methods=["POST"]),
        Route("/webhook", endpoint(backend.webhook, needs_body=True, webhook=True), methods=["POST"]),
        Route(
            "/train",
            endpoint(
                lambda body: backend.webhook({**body, "action": "START_TRAINING"}),
                needs_body=True,
                webhook=True,
            ),
            methods=["POST"],
        ),
    ]
    return Starlette(routes=routes)


def serve(config: BackendConfig, host: str = "127.0.0.1", port: int = 9090) -> None:
    """Run the backend until interrupted (uvicorn, one process; inference in its thread pool)."""
    import uvicorn

    backend = MLBackend(config)
    backend.models.detector()  # load the model before answering: /health then means "ready"
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("the ML backend listens on %s: reachable from other machines", host)
    try:
        uvicorn.run(create_app(backend), host=host, port=port, log_level="info", access_log=False)
    finally:
        if backend.events is not None:
            backend.events.close()


def connect(
    labelstudio_url: str,
    token: str,
    project_id: int,
    backend_url: str,
    *,
    username: str | None,
    password: str | None,
    webhook_secret: str | None = None,
    title: str = "inkloop",
) -> dict[str, Any]:
    """Connect a running backend to a Label Studio project (``POST /api/ml``), as the *Model*
    settings page does; Label Studio validates it by calling ``/health`` and ``/setup``. Run again
    for the same backend URL, it updates that connection (credentials, title) instead of adding a
    second one.

    Label Studio then creates a webhook to the backend's ``/webhook`` for every action, without
    credentials; with ``webhook_secret`` that webhook gets the secret header and is narrowed to the
    review actions, so Label Studio's own deliveries are accepted and nothing else is sent.
    Returns the ML backend record (its password not included)."""
    auth = LabelStudioAuth(labelstudio_url, token)
    body: dict[str, Any] = {
        "url": backend_url,
        "project": project_id,
        "title": title,
        "is_interactive": False,
    }
    if username and password:
        body.update(auth_method="BASIC_AUTH", basic_auth_user=username, basic_auth_pass=password)
    existing = auth.request("GET", "/api/ml", params={"project": project_id}).json() or []
    same = [m for m in existing if str(m.get("url", "")).rstrip("/") == backend_url.rstrip("/")]
    if same:  # connected before: update that record (Label Studio validates it again)
        record = auth.request("PATCH", f"/api/ml/{same[0]['id']}", json_body=body).json()
    else:
        record = auth.request("POST", "/api/ml", json_body=body).json()
    hook_url = backend_url.rstrip("/") + "/webhook"
    hooks = auth.request("GET", "/api/webhooks", params={"project": project_id}).json() or []
    for hook in hooks:
        if hook.get("url") == hook_url and webhook_secret:
            auth.request(
                "PATCH",
                f"/api/webhooks/{hook['id']}",
                json_body={
                    "headers": {WEBHOOK_SECRET_HEADER: webhook_secret},
                    "send_for_all_actions": False,
                    "actions": sorted(REVIEW_ACTIONS),
                },
            )
    return {k: v for k, v in (record or {}).items() if k != "basic_auth_pass"}
