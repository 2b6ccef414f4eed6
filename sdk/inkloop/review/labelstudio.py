"""Human review in Label Studio: push uncertain pages as pre-annotated tasks, pull corrections back.

Why it is shaped this way:

- **Idempotent push by ``page_key``.** The server is the source of truth for what was pushed: a push
  lists the project's existing ``page_key`` values first and only creates tasks for the others, so
  re-running a push after a failure (or twice by accident) never duplicates a task and never loses
  a page — whatever did not get through is simply pushed next time.
- **Reviewers correct, they don't draw.** Each task carries the model's boxes as a prediction with
  ``model_version`` and per-region scores; Label Studio shows them as the starting annotation.
- **Incremental pull.** A cursor (the newest annotation ``updated_at`` seen, plus the ids at that
  instant) is kept in a small state file; a pull returns only annotations created or changed since.
- **Ground-truth rules** (documented in the README):
  a submitted annotation with no regions is a *negative* (``ground_truth == []``: no signature on
  the page); a skipped task (``was_cancelled``) is recorded as ``skipped`` with no ground truth;
  when a task has several annotations, one marked ``ground_truth`` in Label Studio wins, otherwise
  the most recently updated submitted one; a rotated rectangle becomes the axis-aligned box that
  encloses it and the page is flagged ``rotated`` so curation can look at it.
- **Reliability.** Every call is retried with exponential backoff on connection errors, timeouts
  and 5xx/429 answers, then fails with :class:`ReviewServiceError` carrying the server's own text
  (``HTTP 401: Invalid token.``); the API token is redacted from every message.
- **Either kind of token.** A Personal Access Token (what Label Studio 1.23 gives new users) or a
  legacy token, wherever the server allows it: label-studio-sdk authenticates its own calls, and the
  one call it lacks (the multipart page upload) goes through :class:`inkloop.review.auth.LabelStudioAuth`.
- **No half-made project.** A push checks the token (both paths) and the page images before it
  creates a project; if it still fails before any task reached a project it created, it deletes
  that project again. Once tasks are in, the project stays and a retry reuses it (the oldest
  project with the title) and pushes only the missing pages.

Coordinates go through :mod:`inkloop.convert.labelstudio` only.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from inkloop.convert.labelstudio import from_labelstudio, prediction
from inkloop.review.auth import (
    LabelStudioAuth,
    LabelStudioHTTPError,
    ReviewServiceError,
    describe_error,
    multipart,
)
from inkloop.types import Detection, PageResult

log = logging.getLogger(__name__)

T = TypeVar("T")

FROM_NAME = "label"
TO_NAME = "image"
ImageDelivery = Literal["upload", "local-files", "url"]


@dataclass
class RetryPolicy:
    """Backoff for transient failures: attempts × (base · 2^n, capped, with jitter)."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0
    timeout: float = 30.0


@dataclass
class ReviewedPage:
    """One page's outcome in Label Studio, ready to become ground truth."""

    page_key: str
    task_id: int
    status: Literal["submitted", "skipped"]
    ground_truth: list[Detection] | None
    width: int
    height: int
    image: str
    source: str = ""
    doc_id: str = ""
    page_index: int = 0
    annotation_id: int | None = None
    annotator: str | None = None
    updated_at: str = ""
    rotated: bool = False
    annotations_seen: int = 1
    model_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ground_truth"] = None if self.ground_truth is None else [g.to_dict() for g in self.ground_truth]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReviewedPage:
        d = dict(d)
        gt = d.pop("ground_truth")
        return cls(ground_truth=None if gt is None else [Detection.from_dict(g) for g in gt], **d)


def _transient(exc: BaseException) -> bool:
    import urllib.error

    import httpx

    # connection refused/reset and timeouts: httpx's (the SDK's calls) and urllib's (the hand-made ones)
    if isinstance(exc, httpx.TransportError | urllib.error.URLError | ConnectionError | TimeoutError):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


class LabelStudioReview:
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
        return f"LabelStudioReview(url={self.url!r}, project={self.project_title!r})"

    # -- plumbing --------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return self.auth.redact(text) if hasattr(self, "auth") else text.replace(self._token, "***")

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call with retries; the final error names the call and carries the server's
        own text (and which kind of token was refused), never the token."""
        delay = self.retry.base_delay
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return fn()
            except Exception as exc:
                if isinstance(exc, ReviewServiceError) and not isinstance(exc, LabelStudioHTTPError):
                    raise  # already explained by an inner call
                if not _transient(exc) or attempt == self.retry.attempts:
                    msg = self._redact(describe_error(exc))[:500]
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    if getattr(exc, "status_code", None) in (401, 403):
                        msg += f" (with a {self.auth.kind})"
                    raise ReviewServiceError(
                        f"Label Studio at {self.url}: {what} failed{tries}: {msg}"
                    ) from None
                log.warning(
                    "Label Studio %s failed (%s), retry %d in %.1fs",
                    what,
                    exc.__class__.__name__,
                    attempt,
                    delay,
                )
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.retry.max_delay)
        raise AssertionError("unreachable")

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
        retry after a failure (or two clients racing) always lands in the same project."""
        found = self.call("list projects", lambda: list(self.client.projects.list(title=self.project_title)))
        ids = [int(p.id) for p in found if p.title == self.project_title and p.id is not None]
        return min(ids) if ids else None

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
        if self._project_id is None:
            found = self.find_project()
            if found is None:
                raise ReviewServiceError(
                    f"Label Studio at {self.url}: no project named {self.project_title!r} "
                    "(push pages first, or check the title)"
                )
            self._project_id = found
        return self._project_id

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
        """Every task of the project with its annotations (paged by the SDK)."""
        pid = self.project_id
        pager = self.call(
            "list tasks", lambda: self.client.tasks.list(project=pid, fields="all", page_size=100)
        )
        yield from pager

    def existing_page_keys(self) -> dict[str, int]:
        return {
            t.data.get("page_key"): int(t.id) for t in self.iter_tasks() if t.data and t.data.get("page_key")
        }

    # -- images ----------------------------------------------------------------------------------
    def upload_image(self, path: Path) -> str:
        """Upload a page image to Label Studio's storage; returns the URL tasks refer to.

        The upload is the one call label-studio-sdk lacks (multipart to ``/api/projects/<id>/import``);
        finding the stored file's name again is the SDK's ``files.list``."""
        pid = self.project_id
        body, content_type = multipart("file", path.name, path.read_bytes())
        resp = self._http(
            f"upload {path.name}",
            "POST",
            f"/api/projects/{pid}/import",
            params={"commit_to_project": "false", "return_task_ids": "false"},
            data=body,
            content_type=content_type,
        )
        ids = (resp or {}).get("file_upload_ids") or []
        if not ids:
            raise ReviewServiceError(f"Label Studio at {self.url}: upload of {path.name} returned no file id")
        uploads = self.call(
            f"find the upload of {path.name}", lambda: self.client.files.list(id=pid, ids=json.dumps(ids))
        )
        if not uploads:
            raise ReviewServiceError(f"Label Studio at {self.url}: upload {ids} of {path.name} is not listed")
        file_path = str(uploads[0].file)
        return f"/data/{file_path}" if not file_path.startswith("/") else file_path

    # -- push --------------------------------------------------------------------------------------
    def push(
        self,
        pages: Sequence[tuple[PageResult, str | Path]],
        delivery: ImageDelivery = "upload",
        document_root: str | Path | None = None,
        chunk: int = 50,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Create one task per page not yet in the project; returns counts and the task ids.

        ``pages`` pairs each PageResult with its page image: a local PNG for ``upload`` and
        ``local-files`` (which must lie under ``document_root``, the server's
        LOCAL_FILES_DOCUMENT_ROOT), or a URL Label Studio can fetch (``url``: http(s)://, s3://, gs://
        with cloud storage connected to the project).

        Nothing is created before the token and the page images are checked; a push that fails
        before any task reached a project it created deletes that project again (the error says
        so), so a refused upload never leaves an empty project behind.
        """
        if delivery != "url":
            missing = [str(img) for _, img in pages if not Path(img).is_file()]
            if missing:
                raise FileNotFoundError(f"page image not found: {', '.join(missing[:5])}")
        if self._project_id is None:
            self._project_id = self.find_project()
            if self._project_id is None:  # about to create one: prove the token first
                self.check_access()
        created: dict[str, int] = {}
        try:
            existing = self.existing_page_keys()
            todo = [(r, img) for r, img in pages if r.page_key not in existing]
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                tasks = [self._task(r, self._image_ref(img, delivery, document_root)) for r, img in batch]
                ids = self.call(
                    "import tasks",
                    lambda tasks=tasks: self.client.projects.import_tasks(
                        id=self.project_id, request=tasks, return_task_ids=True
                    ),
                )
                task_ids = list(getattr(ids, "task_ids", None) or [])
                for (r, _), tid in zip(batch, task_ids, strict=False):
                    created[r.page_key] = int(tid)
                if progress:
                    progress(len(batch))
        except Exception as exc:
            self._undo_created_project(exc, tasks_created=len(created))
            raise
        return {
            "project_id": self.project_id,
            "pushed": len(created),
            "already_present": len(pages) - len(todo),
            "task_ids": created,
        }

    def _undo_created_project(self, exc: Exception, *, tasks_created: int) -> None:
        """After a failed push: delete the project this client created if no task reached it, and
        say so on the error (its message for ours, a note for others)."""
        pid = self.created_project
        if pid is None or pid != self._project_id or tasks_created:
            return
        try:
            if self.call("count tasks", lambda: list(self.client.tasks.list(project=pid, page_size=1))):
                return  # someone else's push filled it meanwhile: not half-made
            self.delete_project(pid)
        except ReviewServiceError as cleanup:
            note = f"the project {self.project_title!r} (id {pid}) it created is left empty: {cleanup}"
        else:
            note = (
                f"the project {self.project_title!r} it had created was deleted again; nothing is left behind"
            )
        if isinstance(exc, ReviewServiceError) and exc.args:
            exc.args = (f"{exc.args[0]}; {note}", *exc.args[1:])
        else:
            exc.add_note(note)

    def _image_ref(self, img: str | Path, delivery: ImageDelivery, document_root: str | Path | None) -> str:
        if delivery == "url":
            return str(img)
        path = Path(img)
        if not path.is_file():
            raise FileNotFoundError(f"page image not found: {path}")
        if delivery == "upload":
            return self.upload_image(path)
        if document_root is None:
            raise ValueError(
                "local-files delivery needs document_root (the server's LOCAL_FILES_DOCUMENT_ROOT)"
            )
        rel = path.resolve().relative_to(Path(document_root).resolve())
        self.ensure_local_storage(path.resolve().parent)
        return f"/data/local-files/?d={rel.as_posix()}"

    def ensure_local_storage(self, folder: Path) -> None:
        """Label Studio serves a local file only under a Local Storage of the project: add one."""
        pid = self.project_id
        if self._storages is None:
            found = self.call(
                "list local storages", lambda: self.client.import_storage.local.list(project=pid)
            )
            self._storages = {str(st.path) for st in found}
        if any(str(folder) == p or str(folder).startswith(p.rstrip("/") + "/") for p in self._storages):
            return
        self.call(
            "create local storage",
            lambda: self.client.import_storage.local.create(
                project=pid, path=str(folder), title="inkloop pages", use_blob_urls=False
            ),
        )
        self._storages.add(str(folder))

    def _task(self, r: PageResult, image: str) -> dict[str, Any]:
        w, h = r.page.width, r.page.height
        return {
            "data": {
                "image": image,
                "page_key": r.page_key,
                "doc_id": r.page.doc_id,
                "page_index": r.page.index,
                "page_number": r.page.index + 1,
                "source": r.source,
                "page_width": w,
                "page_height": h,
                "model_version": r.model_version,
                "uncertainty": r.uncertainty,
                "reasons": ", ".join(r.reasons),
            },
            "predictions": [prediction(r.detections, w, h, r.model_version, FROM_NAME, TO_NAME)],
        }

    # -- pull --------------------------------------------------------------------------------------
    def pull(self, state_file: str | Path | None = None) -> list[ReviewedPage]:
        """Reviewed pages changed since the cursor in ``state_file`` (all if none); advances it.

        Read-only on the server: a project that does not exist is an error, never created."""
        self.existing_project_id()
        state = _load_state(state_file)
        cursor, seen_at_cursor = state.get("cursor", ""), set(state.get("seen_at_cursor", []))
        out: list[ReviewedPage] = []
        newest, newest_ids = cursor, set(seen_at_cursor)
        for task in self.iter_tasks():
            anns = [_as_dict(a) for a in (getattr(task, "annotations", None) or [])]
            changed = [
                a
                for a in anns
                if (a.get("updated_at") or "") > cursor
                or ((a.get("updated_at") or "") == cursor and a.get("id") not in seen_at_cursor)
            ]
            if not changed:
                continue
            page = _resolve(task, anns)
            if page is not None:
                out.append(page)
            for a in changed:
                ts = a.get("updated_at") or ""
                if ts > newest:
                    newest, newest_ids = ts, {a.get("id")}
                elif ts == newest:
                    newest_ids.add(a.get("id"))
        if state_file is not None:
            _save_state(
                state_file,
                {"cursor": newest, "seen_at_cursor": sorted(i for i in newest_ids if i is not None)},
            )
        return out

    def status(self) -> dict[str, Any]:
        """Counts of the project's tasks and reviews, for ``inkloop review status`` and the
        review-sync wait: Label Studio's own project counters (one call, whatever the project's
        size, instead of listing every task with its annotations). Never creates the project.

        ``reviewed``: tasks with a submitted annotation; ``skipped``: skipped (cancelled)
        annotations; ``pending``: the tasks left (a task skipped once counts as done);
        ``annotations``: submitted annotations; ``reviews``: submitted + skipped annotations,
        the number a wait compares with its baseline (it only grows, so a wait can count what
        arrived since it began)."""
        pid = self.existing_project_id()
        p = _as_dict(self.call("read project counters", lambda: self.client.projects.get(id=pid)))
        tasks = int(p.get("task_number") or 0)
        submitted = int(p.get("total_annotations_number") or 0)
        skipped = int(p.get("skipped_annotations_number") or 0)
        reviewed = int(p.get("num_tasks_with_annotations") or 0)
        return {
            "project_id": pid,
            "url": self.project_url(),
            "tasks": tasks,
            "reviewed": reviewed,
            "skipped": skipped,
            "pending": max(0, tasks - reviewed - skipped),
            "annotations": submitted,
            "reviews": submitted + skipped,
        }


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    return dict(obj)


def _ts(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def _resolve(task: Any, anns: list[dict[str, Any]]) -> ReviewedPage | None:
    """Apply the ground-truth rules to one task's annotations."""
    data = task.data or {}
    for a in anns:
        a["updated_at"] = _ts(a.get("updated_at"))
    w, h = int(data.get("page_width") or 0), int(data.get("page_height") or 0)
    base = dict(
        page_key=str(data.get("page_key", "")),
        task_id=int(task.id),
        width=w,
        height=h,
        image=str(data.get("image", "")),
        source=str(data.get("source", "")),
        doc_id=str(data.get("doc_id", "")),
        page_index=int(data.get("page_index") or 0),
        model_version=str(data.get("model_version", "")),
        annotations_seen=len(anns),
    )
    submitted = [a for a in anns if not a.get("was_cancelled")]
    if not submitted:
        if not anns:
            return None
        last = max(anns, key=lambda a: a["updated_at"])
        return ReviewedPage(
            status="skipped",
            ground_truth=None,
            annotation_id=last.get("id"),
            annotator=_who(last),
            updated_at=last["updated_at"],
            **base,
        )  # type: ignore[arg-type]
    marked = [a for a in submitted if a.get("ground_truth")]
    chosen = max(marked or submitted, key=lambda a: a["updated_at"])
    boxes: list[Detection] = []
    rotated = False
    for region in chosen.get("result") or []:
        if region.get("type") != "rectanglelabels":
            continue
        value = region["value"]
        ow = int(region.get("original_width") or w)
        oh = int(region.get("original_height") or h)
        if float(value.get("rotation") or 0.0) % 360.0:
            rotated = True
        x0, y0, x1, y1 = from_labelstudio(value, ow, oh)
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(ow), x1), min(float(oh), y1)
        for label in value.get("rectanglelabels") or ["signature"]:
            boxes.append(Detection(label=label, score=1.0, xyxy=(x0, y0, x1, y1)))
    return ReviewedPage(
        status="submitted",
        ground_truth=boxes,
        annotation_id=chosen.get("id"),
        annotator=_who(chosen),
        updated_at=chosen["updated_at"],
        rotated=rotated,
        **base,
    )  # type: ignore[arg-type]


def _who(a: dict[str, Any]) -> str | None:
    by = a.get("completed_by")
    if isinstance(by, dict):
        return str(by.get("email") or by.get("id"))
    return None if by is None else str(by)


def _load_state(path: str | Path | None) -> dict[str, Any]:
    if path is None or not Path(path).exists():
        return {}
    return json.loads(Path(path).read_text())


def _save_state(path: str | Path, state: dict[str, Any]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, p)


def write_reviews(pages: Iterable[ReviewedPage], path: str | Path) -> int:
    """Append pulled reviews to a JSON Lines file (the hand-off to curation)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with p.open("a", encoding="utf-8") as f:
        for page in pages:
            f.write(json.dumps(page.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_reviews(path: str | Path) -> list[ReviewedPage]:
    """Latest review per page_key from a reviews file."""
    latest: dict[str, ReviewedPage] = {}
    p = Path(path)
    if not p.exists():
        return []
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = ReviewedPage.from_dict(json.loads(line))
            latest[r.page_key] = r
    return list(latest.values())


@dataclass
class PageImages:
    """Renders review images (reading resolution, PNG) for page results, once per page_key."""

    out_dir: Path
    dpi: float = 150.0
    rendered: dict[str, Path] = field(default_factory=dict)

    def render(self, results: Sequence[PageResult]) -> list[tuple[PageResult, Path]]:
        from inkloop.detection.outputs import write_png
        from inkloop.documents.opening import open_document

        by_source: dict[str, list[PageResult]] = {}
        for r in results:
            by_source.setdefault(r.source, []).append(r)
        out: list[tuple[PageResult, Path]] = []
        for source, rs in by_source.items():
            with open_document(source, people_dpi=self.dpi) as doc:
                for r in rs:
                    path = self.out_dir / f"{r.page.doc_id[:16]}-p{r.page.index + 1}.png"
                    if not path.exists():
                        write_png(doc.render_for_people(r.page.index), path)
                    self.rendered[r.page_key] = path
                    out.append((r, path))
        return out


def push_results(
    client: LabelStudioReview,
    results_dir: str | Path,
    routing: Any = None,
    include_audit: bool = True,
    delivery: ImageDelivery = "upload",
    document_root: str | Path | None = None,
    images_dir: str | Path | None = None,
    dpi: float = 150.0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Route a results folder and push its ``review`` (and ``audit``) pages: the CLI's and the
    Airflow operator's one implementation. Returns a JSON-able summary.

    With a ``verdicts.jsonl`` in the folder, pages of documents judged ``needs_review`` or
    ``partially_signed`` are routed to review first and pushed first (reason ``verdict:…``).
    """
    from inkloop.detection.routing import RoutingConfig
    from inkloop.verdict.integrate import route_with_verdicts

    results = Path(results_dir)
    if not (results / "results.jsonl").exists():
        raise FileNotFoundError(f"{results} has no results.jsonl (run `inkloop detect` first)")
    routed = route_with_verdicts(results, routing or RoutingConfig())
    unscored = bool(routed) and all(any(x.startswith("unscored") for x in r.reasons) for r in routed)
    wanted = {"review", "audit"} if include_audit else {"review"}
    chosen = [r for r in routed if r.decision in wanted]
    # the verdict's pages first (stable: otherwise results order)
    chosen.sort(key=lambda r: not any(x.startswith("verdict:") for x in r.reasons))
    if images_dir is None:
        images_dir = Path(document_root) / "inkloop-pages" if document_root else results / "review-images"
    pairs = PageImages(Path(images_dir), dpi=dpi).render(chosen)
    summary = client.push(pairs, delivery=delivery, document_root=document_root, progress=progress)
    summary.update(
        routed_pages=len(routed),
        selected=len(chosen),
        verdict_first=sum(any(x.startswith("verdict:") for x in r.reasons) for r in chosen),
        unscored=unscored,
        project_url=client.project_url(),
    )
    return summary


def merge_push_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary for several :func:`push_results` calls into the same project: counts add up,
    ``task_ids`` (page key → task) join, ``unscored`` holds only if every folder was unscored."""
    merged: dict[str, Any] = {"task_ids": {}}
    for one in summaries:
        for key, value in one.items():
            if key == "task_ids":
                merged["task_ids"].update(value)
            elif key == "unscored":
                merged[key] = merged.get(key, True) and bool(value)
            elif isinstance(value, int) and not isinstance(value, bool) and key != "project_id":
                merged[key] = merged.get(key, 0) + value
            else:  # the same in every summary (project id and URL)
                merged[key] = value
    return merged


def push_results_dirs(
    client: LabelStudioReview, results_dirs: Sequence[str | Path], **options: Any
) -> dict[str, Any]:
    """:func:`push_results` for each folder (e.g. every results folder a scheduled sync was
    triggered by), in order; returns the merged summary with the folders under ``results_dirs``."""
    if not results_dirs:
        raise ValueError("no results folder to push")
    summary = merge_push_summaries([push_results(client, d, **options) for d in results_dirs])
    summary["results_dirs"] = [str(d) for d in results_dirs]
    return summary


def pull_to_file(
    client: LabelStudioReview, out: str | Path, state: str | Path | None = None
) -> dict[str, Any]:
    """Incremental pull appended to ``out`` (JSON Lines); returns counts."""
    out = Path(out)
    pages = client.pull(state or out.with_suffix(".cursor.json"))
    write_reviews(pages, out)
    return {
        "pulled": len(pages),
        "submitted": sum(p.status == "submitted" for p in pages),
        "negatives": sum(p.status == "submitted" and not p.ground_truth for p in pages),
        "skipped": sum(p.status == "skipped" for p in pages),
        "rotated": sum(p.rotated for p in pages),
        "out": str(out),
    }
