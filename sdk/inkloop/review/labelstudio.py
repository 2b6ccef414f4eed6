"""Human review in Label Studio: push uncertain pages as pre-annotated tasks, pull corrections back.

This module is the orchestration (push, pull, status, and the results-folder entry points the CLI
and the Airflow operators call); the parts live beside it, one job each:
:mod:`~inkloop.review.client` (the retrying client and the review project),
:mod:`~inkloop.review.delivery` (how page images reach Label Studio),
:mod:`~inkloop.review.tasks` (page images and task payloads),
:mod:`~inkloop.review.ground_truth` (the ground-truth rules and the reviews file),
:mod:`~inkloop.review.cursor` (the incremental pull's cursor). Their public names are importable
from here too.

Why it is shaped this way:

- **Idempotent push by ``page_key``.** The server is the source of truth for what was pushed: a push
  lists the project's existing ``page_key`` values first and only creates tasks for the others, so
  re-running a push after a failure (or twice by accident) never duplicates a task and never loses
  a page — whatever did not get through is simply pushed next time.
- **Reviewers correct, they don't draw.** Each task carries the model's boxes as a prediction with
  ``model_version`` and per-region scores; Label Studio shows them as the starting annotation.
- **Incremental pull.** A cursor (the newest annotation ``updated_at`` seen, plus the ids at that
  instant) is kept in a small state file; a pull returns only annotations created or changed since.
  The reviews are written before the cursor moves, so a failed write loses nothing.
- **No half-made project.** A push checks the token (both paths) and the page images before it
  creates a project; if it still fails before any task reached a project it created, it deletes
  that project again. Once tasks are in, the project stays and a retry reuses it (the oldest
  project with the title) and pushes only the missing pages.
- **Local folders and storage URLs alike.** The results folder a push reads (results, verdicts,
  routing), the page images it renders and uploads, the reviews a pull writes and its cursor all go
  through :mod:`inkloop.storage`: ``s3://…`` works as a local folder does, and a URL never becomes
  a local path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from inkloop import storage
from inkloop.review.auth import ReviewServiceError
from inkloop.review.client import LabelStudioClient, RetryPolicy, as_dict
from inkloop.review.cursor import ReviewCursor, cursor_location
from inkloop.review.delivery import ImageDelivery, PageDelivery, page_delivery
from inkloop.review.ground_truth import ReviewedPage, read_reviews, resolve_task, write_reviews
from inkloop.review.tasks import FROM_NAME, TO_NAME, PageImages, task_for
from inkloop.types import PageResult

if TYPE_CHECKING:
    from inkloop.routing import RoutingConfig

__all__ = [
    "FROM_NAME",
    "TO_NAME",
    "ImageDelivery",
    "LabelStudioClient",
    "LabelStudioReview",
    "PageDelivery",
    "PageImages",
    "RetryPolicy",
    "ReviewCursor",
    "ReviewServiceError",
    "ReviewedPage",
    "merge_push_summaries",
    "pull_to_file",
    "push_results",
    "push_results_dirs",
    "read_reviews",
    "require_results",
    "write_reviews",
]


class LabelStudioReview(LabelStudioClient):
    """A Label Studio project used for page review: push pages, pull reviews, read the counters."""

    # -- push --------------------------------------------------------------------------------------
    def push(
        self,
        pages: Sequence[tuple[PageResult, str | os.PathLike[str]]],
        delivery: ImageDelivery | PageDelivery = "upload",
        document_root: str | os.PathLike[str] | None = None,
        chunk: int = 50,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Create one task per page not yet in the project; returns counts and the task ids.

        ``pages`` pairs each PageResult with its page image: a local file or storage URL for
        ``upload``, a local file under ``document_root`` (the server's LOCAL_FILES_DOCUMENT_ROOT)
        for ``local-files``, a reference Label Studio resolves itself for ``url`` (http(s)://, or
        s3:// with cloud storage connected to the project), or any :class:`PageDelivery`.

        Nothing is created before the token and the page images are checked; a push that fails
        before any task reached a project it created deletes that project again (the error says
        so), so a refused upload never leaves an empty project behind.
        """
        how = page_delivery(delivery, document_root)
        how.check([os.fspath(img) for _, img in pages])
        if self._project_id is None and self.find_project() is None:
            self.check_access()  # about to create one: prove the token first
        created: dict[str, int] = {}
        try:
            existing = self.existing_page_keys()
            todo = [(r, os.fspath(img)) for r, img in pages if r.page_key not in existing]
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                task_ids = self.import_tasks([task_for(r, how.reference(self, img)) for r, img in batch])
                for (r, _), tid in zip(batch, task_ids, strict=False):
                    created[r.page_key] = tid
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

    # -- pull --------------------------------------------------------------------------------------
    def changes(self, cursor: ReviewCursor) -> tuple[list[ReviewedPage], ReviewCursor]:
        """Reviewed pages with an annotation created or changed since ``cursor``, and the cursor
        after them. Writes nothing (the caller stores the pages, then the cursor).

        Read-only on the server: a project that does not exist is an error, never created."""
        self.existing_project_id()
        out: list[ReviewedPage] = []
        after = cursor
        for task in self.iter_tasks():
            anns = [as_dict(a) for a in (getattr(task, "annotations", None) or [])]
            changed = [a for a in anns if cursor.is_new(a)]
            if not changed:
                continue
            page = resolve_task(task, anns)
            if page is not None:
                out.append(page)
            after = after.advanced(changed)
        return out, after

    def pull(self, state_file: str | os.PathLike[str] | None = None) -> list[ReviewedPage]:
        """Reviewed pages changed since the cursor in ``state_file`` (a path or storage URL; all
        if none); advances it. Read-only on the server."""
        pages, after = self.changes(ReviewCursor.load(state_file))
        if state_file is not None:
            after.save(state_file)
        return pages

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
        p = as_dict(self.call("read project counters", lambda: self.client.projects.get(id=pid)))
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

    def reviews_so_far(self) -> int:
        """The project's reviews now (``status()["reviews"]``), 0 for a project not made yet: the
        baseline a push hands to the review wait, read before its pages go in, so a reviewer quick
        enough to finish a page before the wait starts still counts. Never creates the project;
        the id found is kept, so the push that follows does not look it up again.

        A project that exists but cannot be read (deleted meanwhile, a token without access, the
        server failing) raises :class:`ReviewServiceError` naming the call: a baseline of 0 there
        would make the wait count every earlier review as new and release at once."""
        if self._project_id is None and self.find_project() is None:
            return 0
        return int(self.status()["reviews"])


def require_results(results_dir: str | os.PathLike[str]) -> str:
    """``results_dir`` as a string if it holds a detection run's ``results.jsonl`` (a local folder
    or a storage URL); :class:`FileNotFoundError` naming it if not, :class:`inkloop.storage.StorageError`
    if it cannot be read (unreachable endpoint, missing bucket …)."""
    from inkloop.detection.results import RESULTS

    results = os.fspath(results_dir)
    if not storage.log_exists(storage.join(results, RESULTS)):
        raise FileNotFoundError(f"{results} has no {RESULTS} (run `inkloop detect` first)")
    return results


def push_results(
    client: LabelStudioReview,
    results_dir: str | os.PathLike[str],
    routing: RoutingConfig | None = None,
    include_audit: bool = True,
    delivery: ImageDelivery | PageDelivery | Literal["storage"] = "upload",
    document_root: str | os.PathLike[str] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    dpi: float = 150.0,
    progress: Callable[[int], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    storage_endpoint: str | None = None,
) -> dict[str, Any]:
    """Route a results folder and push its ``review`` (and ``audit``) pages: the CLI's and the
    Airflow operator's one implementation. Returns a JSON-able summary.

    ``results_dir`` and ``images_dir`` (default ``RESULTS/review-images``, or
    ``DOCUMENT_ROOT/inkloop-pages`` for local files) may be storage URLs; ``storage_options``
    (endpoint, credentials) apply to every URL the push reads or writes. ``delivery="storage"``:
    the pages reach Label Studio through an S3 source storage on the bucket they are rendered
    into (:func:`inkloop.review.cloud_storage.storage_delivery`; ``storage_endpoint`` is the
    endpoint as Label Studio and the annotators' browsers reach it, when it differs).
    With a ``verdicts.jsonl`` in the folder, pages of documents judged ``needs_review`` or
    ``partially_signed`` are routed to review first and pushed first (reason ``verdict:…``).
    """
    from inkloop.routing import RoutingConfig
    from inkloop.verdict.integrate import route_with_verdicts

    with storage.scoped_options(storage_options):
        results = require_results(results_dir)
        if delivery == "storage":
            from inkloop.review.cloud_storage import storage_delivery

            delivery, images_dir = storage_delivery(
                results, images_dir, storage_options, endpoint=storage_endpoint
            )
        routed = route_with_verdicts(results, routing or RoutingConfig())
        unscored = bool(routed) and all(any(x.startswith("unscored") for x in r.reasons) for r in routed)
        wanted = {"review", "audit"} if include_audit else {"review"}
        chosen = [r for r in routed if r.decision in wanted]
        # the verdict's pages first (stable: otherwise results order)
        chosen.sort(key=lambda r: not any(x.startswith("verdict:") for x in r.reasons))
        if images_dir is None:
            images_dir = (
                storage.join(document_root, "inkloop-pages")
                if document_root
                else storage.join(results, "review-images")
            )
        pairs = PageImages(images_dir, dpi=dpi).render(chosen)
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
    client: LabelStudioReview, results_dirs: Sequence[str | os.PathLike[str]], **options: Any
) -> dict[str, Any]:
    """:func:`push_results` for each folder (e.g. every results folder a scheduled sync was
    triggered by), in order; returns the merged summary with the folders under ``results_dirs``."""
    if not results_dirs:
        raise ValueError("no results folder to push")
    summary = merge_push_summaries([push_results(client, d, **options) for d in results_dirs])
    summary["results_dirs"] = [os.fspath(d) for d in results_dirs]
    return summary


def pull_to_file(
    client: LabelStudioReview,
    out: str | os.PathLike[str],
    state: str | os.PathLike[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Incremental pull added to ``out`` (JSON Lines; a path or storage URL); returns counts.

    The cursor (``state``, default ``OUT`` with ``.cursor.json`` for its suffix) is read before and
    written after the reviews: a write that fails loses no review, the next pull repeats them."""
    location = os.fspath(out)
    with storage.scoped_options(storage_options):
        cursor_at = os.fspath(state) if state else cursor_location(location)
        pages, after = client.changes(ReviewCursor.load(cursor_at))
        write_reviews(pages, location)
        after.save(cursor_at)
    return {
        "pulled": len(pages),
        "submitted": sum(p.status == "submitted" for p in pages),
        "negatives": sum(p.status == "submitted" and not p.ground_truth for p in pages),
        "skipped": sum(p.status == "skipped" for p in pages),
        "rotated": sum(p.rotated for p in pages),
        "out": location,
    }
