"""A Label Studio client for one review project: every call retried, every error explained.

Why a module of its own: pushing, pulling and reading counters (:mod:`inkloop.review.labelstudio`)
all need the same three things, and each must be done one way only:

- **Reliability.** Every call is retried with exponential backoff (:func:`inkloop.retry.retry`)
  on connection errors, timeouts and 5xx/429 answers, then fails with :class:`ReviewServiceError`
  carrying the server's own text (``HTTP 401: Invalid token.``); the API token is redacted from
  every message.
- **Either kind of token.** A Personal Access Token (what Label Studio 1.23 gives new users) or a
  legacy token, wherever the server allows it: label-studio-sdk authenticates its own calls, and the
  one call it lacks (the multipart page upload) goes through :class:`inkloop.review.auth.LabelStudioAuth`.
- **One project per title.** The review project is found by title (the oldest with it, so retries
  and racing clients land in the same one); reading calls never create it.

Page images are read through :mod:`inkloop.storage`, so an upload takes a local file or a storage
URL (``s3://…``) alike.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from inkloop import storage
from inkloop.retry import Backoff, retry
from inkloop.review.auth import (
    LabelStudioAuth,
    LabelStudioHTTPError,
    ReviewServiceError,
    describe_error,
    multipart,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class RetryPolicy:
    """Backoff for transient failures: attempts × (base · 2^n, capped, with jitter); ``timeout``:
    of each call."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 30.0

    @property
    def backoff(self) -> Backoff:
        """The pauses as :func:`inkloop.retry.retry` takes them: each spread over [½, 1] of its
        doubling value, so clients that failed together do not retry together."""
        return Backoff(attempts=self.attempts, first=self.base_delay, cap=self.max_delay, jitter=0.5)


def _transient(exc: BaseException) -> bool:
    import urllib.error

    import httpx

    # connection refused/reset and timeouts: httpx's (the SDK's calls) and urllib's (the hand-made ones)
    if isinstance(exc, httpx.TransportError | urllib.error.URLError | ConnectionError | TimeoutError):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


def as_dict(obj: Any) -> dict[str, Any]:
    """A label-studio-sdk object (pydantic) or a plain mapping as a dict."""
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump()  # type: ignore[no-any-return]
    return dict(obj)


class LabelStudioClient:
    """A Label Studio project used for page review, through label-studio-sdk with retries."""

    def __init__(
        self,
        url: str,
        token: str,
        project_title: str = "inkloop review",
        class_names: Sequence[str] = ("signature",),
        retry: RetryPolicy | None = None,
    ) -> None:
        from label_studio_sdk import LabelStudio

        if not 3 <= len(project_title) <= 50:
            raise ValueError(f"Label Studio project titles are 3 to 50 characters, got {len(project_title)}")
        self.url = url.rstrip("/")
        self._token = token
        self.retry = retry or RetryPolicy()
        # the hand-made calls' authentication (uploads): the same token, the same rules as the SDK's
        self.auth = LabelStudioAuth(self.url, token, timeout=self.retry.timeout)
        try:
            self.client = LabelStudio(base_url=self.url, api_key=token, timeout=self.retry.timeout)
        except Exception as exc:  # the SDK refuses an expired or malformed PAT before any call
            raise ReviewServiceError(
                f"Label Studio at {self.url}: the {self.auth.kind} is not usable: "
                f"{self._redact(describe_error(exc))}"
            ) from None
        self.project_title = project_title
        self.class_names = list(class_names)
        self._project_id: int | None = None
        self._storages: set[str] | None = None  # the project's local-storage paths, listed once
        self.created_project: int | None = None  # the project this client created (if it did)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, project={self.project_title!r})"

    # -- plumbing --------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return self.auth.redact(text) if hasattr(self, "auth") else text.replace(self._token, "***")

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call with retries; the final error names the call and carries the server's
        own text (and which kind of token was refused), never the token."""
        attempts = 0

        def once() -> T:
            nonlocal attempts
            attempts += 1
            return fn()

        def explained(exc: Exception) -> bool:  # by an inner call: passed on as it is
            return isinstance(exc, ReviewServiceError) and not isinstance(exc, LabelStudioHTTPError)

        def warn(attempt: int, exc: Exception, pause: float) -> None:
            log.warning(
                "Label Studio %s failed (%s), retry %d in %.1fs", what, exc.__class__.__name__, attempt, pause
            )

        try:
            return retry(
                once,
                self.retry.backoff,
                retryable=lambda exc: not explained(exc) and _transient(exc),
                on_retry=warn,
            )
        except Exception as exc:
            if explained(exc):
                raise
            msg = self._redact(describe_error(exc))[:500]
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            if getattr(exc, "status_code", None) in (401, 403):
                msg += f" (with a {self.auth.kind})"
            raise ReviewServiceError(f"Label Studio at {self.url}: {what} failed{tries}: {msg}") from None

    def _http(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        """Raw REST for what the SDK has no call for (multipart upload of page images), through the
        review stage's one authentication helper; retried like every other call."""
        return self.call(what, lambda: self.auth.request(method, path, **kwargs).json())

    def check_access(self) -> dict[str, Any]:
        """Prove the token works on both paths a push uses (the SDK's and the hand-made one),
        before anything is created: a refused token then leaves nothing behind."""
        self.call("list projects", lambda: list(self.client.projects.list(page_size=1)))
        return self.call("check the token (whoami)", self.auth.whoami)

    # -- project -----------------------------------------------------------------------------------
    @property
    def project_id(self) -> int:
        if self._project_id is None:
            self._project_id = self.ensure_project()
        return self._project_id

    def find_project(self) -> int | None:
        """The review project's id, or None: the oldest project with exactly this title, so a
        retry after a failure (or two clients racing) always lands in the same project.

        Always asks the server (a caller checks whether the project exists now); an id found is
        kept for this client, so the calls after it (status, push, pull) do not list the projects
        again."""
        found = self.call("list projects", lambda: list(self.client.projects.list(title=self.project_title)))
        ids = [int(p.id) for p in found if p.title == self.project_title and p.id is not None]
        if not ids:
            return None
        if self._project_id is None:
            self._project_id = min(ids)
        return min(ids)

    def ensure_project(self) -> int:
        """Get or create the review project by title (idempotent)."""
        from inkloop.review.labeling import instructions_html, labeling_config

        existing = self.find_project()
        if existing is not None:
            return existing
        created = self.call(
            "create project",
            lambda: self.client.projects.create(
                title=self.project_title,
                label_config=labeling_config(self.class_names),
                expert_instruction=instructions_html(),
                show_instruction=True,
                enable_empty_annotation=True,
                show_skip_button=True,
            ),
        )
        self.created_project = int(created.id)
        return self.created_project

    def existing_project_id(self) -> int:
        """The review project's id for a read-only call (status, pull): never creates one.

        A read that created the project it was asked about would hide a typo in the title (an
        empty project answers "0 reviews" forever) and leave a stray project behind."""
        found = self._project_id if self._project_id is not None else self.find_project()
        if found is None:
            raise ReviewServiceError(
                f"Label Studio at {self.url}: no project named {self.project_title!r} "
                "(push pages first, or check the title)"
            )
        return found

    def delete_project(self, project_id: int) -> None:
        """Delete a project (the half-made one of a failed push); forgets it if it was this client's."""
        self.call("delete project", lambda: self.client.projects.delete(id=project_id))
        if self._project_id == project_id:
            self._project_id, self._storages = None, None
        if self.created_project == project_id:
            self.created_project = None

    def project_url(self) -> str:
        return f"{self.url}/projects/{self.project_id}/data"

    def iter_tasks(self) -> Iterator[Any]:
        """Every task of the project with its annotations (paged by the SDK), its data as stored:
        an ``s3://`` page stays that URL (by default Label Studio would hand out its
        ``/tasks/<id>/resolve/`` link, which only a logged-in browser can follow)."""
        pid = self.project_id
        pager = self.call(
            "list tasks",
            lambda: self.client.tasks.list(project=pid, fields="all", page_size=100, resolve_uri=False),
        )
        yield from pager

    def existing_page_keys(self) -> dict[str, int]:
        return {
            t.data.get("page_key"): int(t.id) for t in self.iter_tasks() if t.data and t.data.get("page_key")
        }

    def import_tasks(self, tasks: list[dict[str, Any]]) -> list[int]:
        """Create tasks in the project; returns their ids in order."""
        pid = self.project_id
        ids = self.call(
            "import tasks",
            lambda: self.client.projects.import_tasks(id=pid, request=tasks, return_task_ids=True),
        )
        return [int(t) for t in (getattr(ids, "task_ids", None) or [])]

    # -- images ----------------------------------------------------------------------------------
    def upload_image(self, image: str | os.PathLike[str]) -> str:
        """Upload a page image (a local file or a storage URL, read through :mod:`inkloop.storage`)
        to Label Studio's storage; returns the URL tasks refer to.

        The upload is the one call label-studio-sdk lacks (multipart to ``/api/projects/<id>/import``);
        finding the stored file's name again is the SDK's ``files.list``."""
        pid = self.project_id
        name = storage.file_name(image)
        body, content_type = multipart("file", name, storage.read_bytes(image))
        resp = self._http(
            f"upload {name}",
            "POST",
            f"/api/projects/{pid}/import",
            params={"commit_to_project": "false", "return_task_ids": "false"},
            data=body,
            content_type=content_type,
        )
        ids = (resp or {}).get("file_upload_ids") or []
        if not ids:
            raise ReviewServiceError(f"Label Studio at {self.url}: upload of {name} returned no file id")
        uploads = self.call(
            f"find the upload of {name}", lambda: self.client.files.list(id=pid, ids=json.dumps(ids))
        )
        if not uploads:
            raise ReviewServiceError(f"Label Studio at {self.url}: upload {ids} of {name} is not listed")
        file_path = str(uploads[0].file)
        return f"/data/{file_path}" if not file_path.startswith("/") else file_path

    def ensure_local_storage(self, folder: str | os.PathLike[str]) -> None:
        """Label Studio serves a local file only under a Local Storage of the project: add one."""
        pid = self.project_id
        path = os.fspath(folder)
        if self._storages is None:
            found = self.call(
                "list local storages", lambda: self.client.import_storage.local.list(project=pid)
            )
            self._storages = {str(st.path) for st in found}
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in self._storages):
            return
        self.call(
            "create local storage",
            lambda: self.client.import_storage.local.create(
                project=pid, path=path, title="inkloop pages", use_blob_urls=False
            ),
        )
        self._storages.add(path)
