"""Curation in FiftyOne: one persistent dataset of pages, evaluation, issues, a frozen test split,
and versioned YOLO exports.

Why it is shaped this way:

- **One persistent dataset, pages as samples.** Each sample is one page (``page_key`` is unique,
  enforced by a unique index), with the model's boxes in ``predictions`` (with confidence and
  ``model_version``) and the reviewed boxes in ``ground_truth``. ``ground_truth`` is ``None`` for a
  page nobody reviewed and an *empty* ``Detections`` for a reviewed page with no signature (a
  valuable negative); ``reviewed`` says which, so a filter never confuses the two. Re-importing is
  an upsert by ``page_key``: it updates the sample, never duplicates it, and a record that carries
  no review never erases an earlier review.
- **Boxes only through** :mod:`inkloop.convert.fiftyone` (dataset) and :mod:`inkloop.convert.yolo`
  (export), so a box means the same pixels everywhere.
- **Offline Brain.** FiftyOne Brain's default embedding model downloads weights; here pages are
  embedded by :func:`thumbnail_embedding` (a 32×32 grayscale thumbnail, mean-centred and
  unit-normalised, so cosine distance is 1 − pixel correlation). It finds the same page rendered
  twice, resized or re-encoded (the committed fixtures contain such a pair from two public
  datasets), not semantically similar pages. Brain's ``compute_similarity`` keeps the index under a
  brain key (the App can sort by similarity with it) and ``find_duplicates`` flags the redundant
  copies; ``compute_mistakenness`` scores likely label mistakes from the predictions' confidence.
  ``compute_hardness`` needs classification logits, which a detector does not produce, so hard
  pages are found by evaluation instead (pages with FP/FN).
- **A frozen test split.** A reviewed page gets ``train``/``val``/``test`` from a hash of its
  ``page_key`` (or of its near-duplicate group's anchor), so the assignment is deterministic and
  independent of what else is in the dataset. Once ``test``, a page stays ``test`` forever and is
  never exported for training; a new page that is a near-duplicate of a test page goes to test;
  a train/val page later found to duplicate a test page is set aside as ``excluded`` (it may have
  been trained on, so it can join neither side). The ``split`` field is authoritative; the sample
  tags mirror it for the App.
- **Versioned exports.** An export is written to a temporary folder, hashed with
  :func:`inkloop.lifecycle.training.dataset_manifest` (the data version), and renamed into
  ``<out>/<version>/``; an existing version folder is never overwritten (exporting unchanged data
  again returns the existing folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from inkloop.convert.fiftyone import from_fiftyone, to_fiftyone
from inkloop.convert.yolo import format_line, to_yolo
from inkloop.curation.database import check_database, import_fiftyone
from inkloop.types import BoxXYXY, Detection, PageResult

if TYPE_CHECKING:
    from inkloop.review.labelstudio import ReviewedPage

SPLITS = ("train", "val", "test")
EXCLUDED = "excluded"
DEFAULT_CLASSES = ("signature",)
DEFAULT_SPLIT = {"test_fraction": 0.2, "val_fraction": 0.1, "seed": 0}
THUMB_SIZE = 32
SIMILARITY_KEY = "page_similarity"

ReviewStatus = Literal["submitted", "skipped"]
ProgressFn = Callable[[int], None]


class CurationError(RuntimeError):
    """A curation request that cannot be honoured as asked (the message says why)."""


# --------------------------------------------------------------------------------------------
# Records


@dataclass
class PageRecord:
    """One page to put in the dataset: its image, the model's boxes and, if reviewed, the truth.

    All boxes are ``xyxy`` in page pixels (``width`` × ``height``). ``ground_truth=None`` means
    "not reviewed"; ``[]`` means "reviewed: no signature". A record with neither
    ``ground_truth`` nor ``review_status`` leaves an existing sample's review untouched.
    """

    page_key: str
    image: str | os.PathLike[str]
    width: int
    height: int
    predictions: list[Detection] = field(default_factory=list)
    model_version: str = ""
    ground_truth: list[Detection] | None = None
    review_status: ReviewStatus | None = None
    annotator: str | None = None
    task_id: int | None = None
    reviewed_at: str | None = None
    rotated: bool = False
    source: str = ""
    doc_id: str = ""
    page_index: int = 0

    @property
    def has_review(self) -> bool:
        return self.review_status is not None or self.ground_truth is not None

    @classmethod
    def from_result(
        cls, result: PageResult, image: str | os.PathLike[str], review: ReviewedPage | None = None
    ) -> PageRecord:
        """A record from a detection result and, optionally, its Label Studio review."""
        rec = cls(
            page_key=result.page_key,
            image=image,
            width=result.page.width,
            height=result.page.height,
            predictions=list(result.detections),
            model_version=result.model_version,
            source=result.source,
            doc_id=result.page.doc_id,
            page_index=result.page.index,
        )
        if review is not None:
            rec.review_status = review.status
            rec.ground_truth = (
                None
                if review.ground_truth is None
                else _rescale(review.ground_truth, (review.width, review.height), (rec.width, rec.height))
            )
            rec.annotator = review.annotator
            rec.task_id = review.task_id
            rec.reviewed_at = review.updated_at or None
            rec.rotated = review.rotated
        return rec


def _rescale(dets: Sequence[Detection], src: tuple[int, int], dst: tuple[int, int]) -> list[Detection]:
    """Boxes drawn on a review image of another resolution, moved to page pixels."""
    if not src[0] or not src[1] or tuple(src) == tuple(dst):
        return list(dets)
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    return [
        Detection(d.label, d.score, (d.xyxy[0] * sx, d.xyxy[1] * sy, d.xyxy[2] * sx, d.xyxy[3] * sy))
        for d in dets
    ]


def split_for_key(key: str, test_fraction: float, val_fraction: float, seed: int) -> str:
    """Deterministic split from a key's hash: the same key always lands in the same split."""
    u = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2.0**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def thumbnail_embedding(path: str | os.PathLike[str], size: int = THUMB_SIZE) -> np.ndarray:
    """A page's offline "embedding": grayscale ``size``×``size`` box-filtered thumbnail, mean-centred
    and L2-normalised (aspect ratio ignored, so a resized copy of a page embeds the same).

    Why not a CNN: Brain's default model downloads weights (no network here), and the question is
    "is this the same page again?", which pixels answer well: a copy, re-scan at another size or a
    re-encode scores a cosine distance below ~0.01, different pages 0.4–1.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (size * 4, size * 4))  # JPEG: decode at reduced scale, much faster
        small = im.convert("L").resize((size, size), Image.Resampling.BOX)
    v = np.asarray(small, dtype=np.float32).ravel()
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _safe_stem(page_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", page_key).strip("._") or "page"


def _clip(xyxy: BoxXYXY, w: float, h: float) -> BoxXYXY:
    x0, y0, x1, y1 = xyxy
    return (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------------------------
# The store


class CurationStore:
    """The persistent FiftyOne dataset of pages, and every curation operation on it.

    ``classes`` applies when the dataset is created (stored as its ``default_classes``); an
    existing dataset keeps its own class list, which orders the YOLO class ids on export.
    """

    def __init__(
        self,
        dataset_name: str = "inkloop",
        classes: Sequence[str] = DEFAULT_CLASSES,
        create: bool = True,
    ) -> None:
        check_database()
        self.fo: Any = import_fiftyone()
        fo = self.fo
        self.name = dataset_name
        if fo.dataset_exists(dataset_name):
            ds = fo.load_dataset(dataset_name)
        elif not create:
            raise CurationError(f"no FiftyOne dataset named {dataset_name!r}: import results first")
        else:
            try:
                ds = fo.Dataset(dataset_name, persistent=True)
            except ValueError:  # created by another process in between
                ds = fo.load_dataset(dataset_name)
        self.dataset: Any = ds
        self._ensure_schema(classes)

    def __repr__(self) -> str:
        return f"CurationStore(dataset={self.name!r}, samples={len(self.dataset)})"

    # -- schema --------------------------------------------------------------------------------
    def _ensure_schema(self, classes: Sequence[str]) -> None:
        fo, ds = self.fo, self.dataset
        dets = {"embedded_doc_type": fo.Detections}
        fields: dict[str, tuple[Any, dict[str, Any]]] = {
            "page_key": (fo.StringField, {}),
            "doc_id": (fo.StringField, {}),
            "page_index": (fo.IntField, {}),
            "source": (fo.StringField, {}),
            "page_width": (fo.IntField, {}),
            "page_height": (fo.IntField, {}),
            "model_version": (fo.StringField, {}),
            "predictions": (fo.EmbeddedDocumentField, dets),
            "ground_truth": (fo.EmbeddedDocumentField, dets),
            "reviewed": (fo.BooleanField, {}),
            "review_status": (fo.StringField, {}),
            "annotator": (fo.StringField, {}),
            "task_id": (fo.IntField, {}),
            "reviewed_at": (fo.StringField, {}),
            "rotated": (fo.BooleanField, {}),
            "split": (fo.StringField, {}),
            "thumb_embedding": (fo.VectorField, {}),
            "near_duplicate": (fo.BooleanField, {}),
            "dup_group": (fo.StringField, {}),
            "dup_of": (fo.StringField, {}),
            "dup_distance": (fo.FloatField, {}),
            "label_issue": (fo.BooleanField, {}),
            "label_issue_score": (fo.FloatField, {}),
            "label_issue_reasons": (fo.ListField, {"subfield": fo.StringField}),
        }
        schema = ds.get_field_schema()
        for name, (ftype, kwargs) in fields.items():
            if name not in schema:
                ds.add_sample_field(name, ftype, **kwargs)
        if "page_key" not in ds.list_indexes():
            ds.create_index("page_key", unique=True)
        if not ds.default_classes:
            ds.default_classes = list(classes)
            ds.save()

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.default_classes or DEFAULT_CLASSES)

    def delete(self) -> None:
        """Delete the dataset (tests and throwaway stores)."""
        self.dataset.delete()

    # -- views ---------------------------------------------------------------------------------
    def reviewed(self, split: str | None = None) -> Any:
        """The reviewed pages (ground truth present, negatives included), optionally one split."""
        F = self.fo.ViewField
        view = self.dataset.match(F("reviewed") == True)  # noqa: E712 (a MongoDB expression)
        if split is not None:
            view = view.match(F("split") == split)
        return view

    def stats(self) -> dict[str, Any]:
        """Counts for people and for ``--json``: pages, reviewed, negatives, per split."""
        ds = self.dataset
        rv = self.reviewed()
        F = self.fo.ViewField
        return {
            "dataset": self.name,
            "samples": len(ds),
            "reviewed": len(rv),
            "negatives": len(rv.match(F("ground_truth.detections").length() == 0)),
            "splits": {s: len(ds.match(F("split") == s)) for s in (*SPLITS, EXCLUDED)},
            "model_versions": sorted(v for v in ds.distinct("model_version") if v),
            "classes": self.classes,
        }

    # -- upsert --------------------------------------------------------------------------------
    def _dets(self, dets: Iterable[Detection], w: int, h: int, scores: bool) -> Any:
        fo = self.fo
        return fo.Detections(
            detections=[
                fo.Detection(
                    label=d.label,
                    bounding_box=to_fiftyone(d.xyxy, w, h),
                    confidence=float(d.score) if scores else None,
                )
                for d in dets
            ]
        )

    def _image_metadata(self, path: Path) -> Any:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            mime = Image.MIME.get(im.format or "", None)
        return self.fo.ImageMetadata(width=w, height=h, size_bytes=path.stat().st_size, mime_type=mime)

    def _apply_review(
        self,
        s: Any,
        status: str | None,
        gt: list[Detection] | None,
        w: int,
        h: int,
        annotator: str | None,
        task_id: int | None,
        reviewed_at: str | None,
        rotated: bool,
    ) -> None:
        status = status or "submitted"
        if status == "skipped" or gt is None:
            s["ground_truth"] = None
            s["reviewed"] = False
        else:
            s["ground_truth"] = self._dets(gt, w, h, scores=False)
            s["reviewed"] = True
        s["review_status"] = status
        s["annotator"] = annotator
        s["task_id"] = task_id
        s["reviewed_at"] = reviewed_at
        s["rotated"] = bool(rotated)

    def _fill(self, s: Any, r: PageRecord, new: bool) -> None:
        path = Path(r.image).resolve()
        if new or s.filepath != str(path):
            s.filepath = str(path)
            s["thumb_embedding"] = None  # a new image needs a new embedding
            s.metadata = self._image_metadata(path)
        s["page_key"] = r.page_key
        s["doc_id"] = r.doc_id
        s["page_index"] = r.page_index
        s["source"] = r.source
        s["page_width"] = int(r.width)
        s["page_height"] = int(r.height)
        s["model_version"] = r.model_version
        s["predictions"] = self._dets(r.predictions, r.width, r.height, scores=True)
        if r.has_review:
            self._apply_review(
                s,
                r.review_status,
                r.ground_truth,
                r.width,
                r.height,
                r.annotator,
                r.task_id,
                r.reviewed_at,
                r.rotated,
            )
        elif new:
            s["reviewed"] = False

    def upsert_pages(
        self,
        records: Iterable[PageRecord],
        progress: ProgressFn | None = None,
        batch_size: int = 200,
        _retry: bool = False,
    ) -> dict[str, int]:
        """Add new pages and update known ones, by ``page_key``; returns ``added``/``updated``.

        Idempotent: upserting the same records twice leaves one sample per page with the same
        content. Concurrent writers (e.g. mapped Airflow tasks) are safe: the unique index
        refuses a second sample for a page and the refused batch is retried as updates.
        Evaluation and issue fields are not recomputed here (run them again).
        """
        latest: dict[str, PageRecord] = {}
        for r in records:
            latest[r.page_key] = r  # the last record for a page wins
        if not latest:
            return {"added": 0, "updated": 0, "reviewed": 0}
        keys, ids = self.dataset.values(["page_key", "id"])
        existing = dict(zip(keys, ids, strict=True))
        new = [r for k, r in latest.items() if k not in existing]
        old = {existing[k]: r for k, r in latest.items() if k in existing}
        added = raced = 0
        for i in range(0, len(new), batch_size):
            chunk = new[i : i + batch_size]
            batch = []
            for r in chunk:
                s = self.fo.Sample(filepath=str(Path(r.image).resolve()))
                self._fill(s, r, new=True)
                batch.append(s)
            try:
                self.dataset.add_samples(batch, progress=False)
                added += len(batch)
            except ValueError as exc:
                if _retry or "duplicate key" not in str(exc):
                    raise
                again = self.upsert_pages(chunk, batch_size=batch_size, _retry=True)
                added += again["added"]
                raced += again["updated"]
            if progress:
                progress(len(batch))
        if old:
            view = self.dataset.select(list(old))
            for s in view.iter_samples(autosave=True, batch_size=batch_size, progress=False):
                self._fill(s, old[s.id], new=False)
                if progress:
                    progress(1)
        return {
            "added": added,
            "updated": len(old) + raced,
            "reviewed": sum(1 for r in latest.values() if r.ground_truth is not None),
        }

    def apply_reviews(self, reviews: Iterable[ReviewedPage]) -> dict[str, Any]:
        """Set the review of pages already in the dataset (e.g. reviews pulled after the import).

        Boxes are moved from the review image's pixels to page pixels. Returns ``updated`` and the
        ``unknown`` page keys (not in the dataset: import their results first).
        """
        latest = {r.page_key: r for r in reviews}
        if not latest:
            return {"updated": 0, "unknown": []}
        F = self.fo.ViewField
        view = self.dataset.match(F("page_key").is_in(list(latest)))
        seen: set[str] = set()
        for s in view.iter_samples(autosave=True, progress=False):
            r = latest[s.page_key]
            w, h = int(s.page_width), int(s.page_height)
            gt = None if r.ground_truth is None else _rescale(r.ground_truth, (r.width, r.height), (w, h))
            self._apply_review(s, r.status, gt, w, h, r.annotator, r.task_id, r.updated_at or None, r.rotated)
            seen.add(s.page_key)
        return {"updated": len(seen), "unknown": sorted(set(latest) - seen)}

    def get_page(self, page_key: str) -> dict[str, Any]:
        """A sample as inkloop types: ``predictions``/``ground_truth`` as Detections in page pixels."""
        s = self.dataset.one(self.fo.ViewField("page_key") == page_key)
        w, h = s.page_width, s.page_height

        def conv(field_name: str) -> list[Detection] | None:
            d = s[field_name]
            if d is None:
                return None
            return [
                Detection(x.label, float(x.confidence or 1.0), from_fiftyone(x.bounding_box, w, h))
                for x in d.detections
            ]

        return {
            "page_key": s.page_key,
            "filepath": s.filepath,
            "width": w,
            "height": h,
            "predictions": conv("predictions") or [],
            "ground_truth": conv("ground_truth") if s.reviewed else None,
            "split": s.split,
            "tags": list(s.tags),
        }

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self,
        pred_field: str = "predictions",
        gt_field: str = "ground_truth",
        eval_key: str = "eval",
        iou: float = 0.5,
        compute_mAP: bool = False,
        split: str | None = None,
    ) -> dict[str, Any]:
        """``evaluate_detections`` on the reviewed pages (or one split of them).

        Writes per-sample ``<eval_key>_tp/_fp/_fn`` and per-box ``<eval_key>`` (tp/fp/fn) fields;
        returns counts, precision, recall, F1 (and COCO-style mAP when ``compute_mAP``, which
        works offline). Negatives count: every box on a reviewed empty page is a false positive.
        """
        view = self.reviewed(split)
        n = len(view)
        summary: dict[str, Any] = {
            "dataset": self.name,
            "split": split,
            "eval_key": eval_key,
            "iou": iou,
            "pages": n,
        }
        if n == 0:
            summary.update(tp=0, fp=0, fn=0, precision=None, recall=None, f1=None, pages_with_errors=0)
            return summary
        results = view.evaluate_detections(
            pred_field, gt_field=gt_field, eval_key=eval_key, iou=iou, compute_mAP=compute_mAP, progress=False
        )
        tp, fp, fn = (int(view.sum(f"{eval_key}_{k}") or 0) for k in ("tp", "fp", "fn"))
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
        F = self.fo.ViewField
        errors = view.match((F(f"{eval_key}_fp") > 0) | (F(f"{eval_key}_fn") > 0))
        summary.update(
            tp=tp,
            fp=fp,
            fn=fn,
            precision=precision,
            recall=recall,
            f1=f1,
            pages_with_errors=len(errors),
            negatives=len(view.match(F(f"{gt_field}.detections").length() == 0)),
            model_versions=sorted(v for v in view.distinct("model_version") if v),
        )
        if compute_mAP:
            summary["mAP"] = float(results.mAP())
        return summary

    # -- brain ---------------------------------------------------------------------------------
    def _ensure_embeddings(self, progress: ProgressFn | None = None) -> int:
        """Compute missing thumbnail embeddings; returns how many images could not be read."""
        missing = self.dataset.exists("thumb_embedding", False)
        if not len(missing):
            return 0
        ids, paths = missing.values(["id", "filepath"])
        vecs: dict[str, np.ndarray] = {}
        unreadable = 0
        for sid, path in zip(ids, paths, strict=True):
            try:
                vecs[sid] = thumbnail_embedding(path)
            except OSError:
                unreadable += 1  # stays without embedding: excluded from duplicate search
            if progress:
                progress(1)
        if vecs:
            self.dataset.set_values("thumb_embedding", vecs, key_field="id")
        return unreadable

    def find_near_duplicates(
        self, threshold: float = 0.05, progress: ProgressFn | None = None
    ) -> list[list[str]]:
        """Groups of pages that are the same image (cosine distance of thumbnails < ``threshold``).

        Writes ``dup_group`` (the group's smallest ``page_key``) on every member,
        ``near_duplicate=True`` and ``dup_of`` on the redundant copies Brain's ``find_duplicates``
        picks, and ``dup_distance``. Groups are the connected components of the "closer than
        ``threshold``" graph (complete, so a chain of near-copies is one group: the split relies on
        it); Brain's similarity index is kept under the brain key ``page_similarity`` for the App.
        Returns the groups (each sorted), largest first.
        """
        import fiftyone.brain as fob
        from scipy.sparse.csgraph import connected_components
        from sklearn.neighbors import NearestNeighbors

        ds = self.dataset
        self._ensure_embeddings(progress)
        ds.set_field("near_duplicate", False).save("near_duplicate")
        for name in ("dup_group", "dup_of", "dup_distance"):
            ds.set_field(name, None).save(name)
        view = ds.exists("thumb_embedding")
        if len(view) < 2:
            return []
        ids, keys, vecs = view.values(["id", "page_key", "thumb_embedding"])
        X = np.stack(vecs).astype(np.float32)

        # Complete groups: every pair closer than the threshold is connected.
        graph = NearestNeighbors(radius=threshold, metric="cosine").fit(X).radius_neighbors_graph(X)
        _, labels = connected_components(graph, directed=False)
        members: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            members.setdefault(int(lab), []).append(i)
        groups = [sorted(keys[i] for i in m) for m in members.values() if len(m) > 1]

        # Brain: a persistent similarity index (App) and its choice of redundant copies.
        if SIMILARITY_KEY in ds.list_brain_runs():
            ds.delete_brain_run(SIMILARITY_KEY)
        index = fob.compute_similarity(
            view,
            embeddings="thumb_embedding",
            backend="sklearn",
            metric="cosine",
            brain_key=SIMILARITY_KEY,
            progress=False,
        )
        index.find_duplicates(thresh=threshold)
        pos = {sid: i for i, sid in enumerate(ids)}
        dup_of: dict[str, str] = {}
        dup_dist: dict[str, float] = {}
        for kept, dups in index.neighbors_map.items():
            for dup_id, _ in dups:  # Brain's reported distance is not cosine here: recompute
                a, b = pos[str(dup_id)], pos[str(kept)]
                dup_of[str(dup_id)] = keys[b]
                dup_dist[str(dup_id)] = round(float(1.0 - X[a] @ X[b]), 6)
        group_of = {k: g[0] for g in groups for k in g}
        if group_of:
            anchors = {sid: group_of[k] for sid, k in zip(ids, keys, strict=True) if k in group_of}
            ds.set_values("dup_group", anchors, key_field="id")
        if dup_of:
            ds.set_values("near_duplicate", dict.fromkeys(dup_of, True), key_field="id")
            ds.set_values("dup_of", dup_of, key_field="id")
            ds.set_values("dup_distance", dup_dist, key_field="id")
        return sorted(groups, key=lambda g: (-len(g), g[0]))

    def find_label_mistakes(
        self,
        pred_field: str = "predictions",
        gt_field: str = "ground_truth",
        loc_threshold: float = 0.7,
        missing_conf: float = 0.8,
        iou: float = 0.5,
    ) -> list[str]:
        """Reviewed pages whose ground truth is likely wrong, most likely first.

        Brain's ``compute_mistakenness`` (from prediction confidence, no downloads) gives per-box
        ``mistakenness_loc`` (a confident prediction overlapping the box only loosely), and
        ``possible_spurious`` (a ground-truth box no prediction matches). Brain only calls a
        prediction "missing" above 0.95 confidence; a detector's confident boxes are often lower,
        so an unmatched prediction at ``missing_conf`` or more (from :meth:`evaluate`, eval key
        ``eval``) is flagged too. Writes ``label_issue``, ``label_issue_score`` and
        ``label_issue_reasons`` (``loose_box``, ``missing_box``, ``spurious_box``).
        """
        import fiftyone.brain as fob

        view = self.reviewed()
        if not len(view):
            return []
        fob.compute_mistakenness(view, pred_field, gt_field, progress=False)
        self.evaluate(pred_field, gt_field, eval_key="eval", iou=iou)
        ids, keys, loc, spurious, pred_eval, pred_conf = view.values(
            [
                "id",
                "page_key",
                f"{gt_field}.detections.mistakenness_loc",
                "possible_spurious",
                f"{pred_field}.detections.eval",
                f"{pred_field}.detections.confidence",
            ]
        )
        flagged: list[tuple[float, str]] = []
        is_issue: dict[str, bool] = {}
        scores: dict[str, float | None] = {}
        reasons: dict[str, list[str]] = {}
        for sid, key, lo, sp, ev, cf in zip(ids, keys, loc, spurious, pred_eval, pred_conf, strict=True):
            why: list[str] = []
            score = 0.0
            lo_max = max((x for x in (lo or []) if x is not None), default=0.0)
            if lo_max >= loc_threshold:
                why.append("loose_box")
                score = max(score, lo_max)
            conf_fp = [
                c for e, c in zip(ev or [], cf or [], strict=True) if e == "fp" and (c or 0) >= missing_conf
            ]
            if conf_fp:
                why.append("missing_box")
                score = max(score, max(conf_fp))
            if sp:
                why.append("spurious_box")
                score = max(score, 0.5)
            is_issue[sid] = bool(why)
            scores[sid] = round(score, 4) if why else None
            reasons[sid] = why
            if why:
                flagged.append((score, key))
        self.dataset.set_values("label_issue", is_issue, key_field="id")
        self.dataset.set_values("label_issue_score", scores, key_field="id")
        self.dataset.set_values("label_issue_reasons", reasons, key_field="id")
        return [k for _, k in sorted(flagged, key=lambda t: (-t[0], t[1]))]

    def find_issues(
        self,
        dup_threshold: float = 0.05,
        loc_threshold: float = 0.7,
        missing_conf: float = 0.8,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Near-duplicates, likely label mistakes and uniqueness, in one JSON-able summary."""
        import fiftyone.brain as fob

        groups = self.find_near_duplicates(dup_threshold, progress)
        mistakes = self.find_label_mistakes(loc_threshold=loc_threshold, missing_conf=missing_conf)
        with_emb = self.dataset.exists("thumb_embedding")
        if len(with_emb) >= 2:  # how unlike the rest each page is: review the odd ones first
            if "uniqueness" in self.dataset.list_brain_runs():
                self.dataset.delete_brain_run("uniqueness")
            fob.compute_uniqueness(with_emb, embeddings="thumb_embedding", progress=False)
        F = self.fo.ViewField
        details = []
        if mistakes:
            v = self.dataset.match(F("page_key").is_in(mistakes))
            info = dict(
                zip(
                    v.values("page_key"),
                    zip(v.values("label_issue_score"), v.values("label_issue_reasons"), strict=True),
                    strict=True,
                )
            )
            details = [{"page_key": k, "score": info[k][0], "reasons": info[k][1]} for k in mistakes]
        dup_keys = sorted(self.dataset.match(F("near_duplicate") == True).values("page_key"))  # noqa: E712
        return {
            "dataset": self.name,
            "near_duplicate_groups": groups,
            "near_duplicates": dup_keys,
            "label_mistakes": details,
            "dup_threshold": dup_threshold,
            "loc_threshold": loc_threshold,
            "missing_conf": missing_conf,
        }

    # -- the frozen split ------------------------------------------------------------------------
    def split_config(self) -> dict[str, Any] | None:
        """The settings the split was frozen with (``None`` before the first freeze)."""
        cfg = self.dataset.info.get("inkloop_split")
        return dict(cfg) if cfg else None

    def freeze_test_split(
        self,
        fraction: float | None = None,
        val_fraction: float | None = None,
        seed: int | None = None,
        dedupe: bool = True,
        dup_threshold: float = 0.05,
    ) -> dict[str, Any]:
        """Give every reviewed page without a split one; never move a page out of ``test``.

        The first call freezes ``fraction`` (test), ``val_fraction`` and ``seed`` in the dataset;
        later calls use them (passing different values raises :class:`CurationError`, since
        changing them would make the split depend on when a page arrived). With ``dedupe`` the
        near-duplicate groups are recomputed first, so a group always shares one split.
        Returns counts per split and what this call changed.
        """
        ds = self.dataset
        asked = {"test_fraction": fraction, "val_fraction": val_fraction, "seed": seed}
        cfg = self.split_config()
        if cfg is None:
            cfg = {k: (v if v is not None else DEFAULT_SPLIT[k]) for k, v in asked.items()}
            t, v = cfg["test_fraction"], cfg["val_fraction"]
            if min(t, v) < 0 or t + v >= 1:
                raise CurationError(f"bad split fractions: {cfg}")
            cfg["frozen_at"] = _now()
            ds.info["inkloop_split"] = cfg
            ds.save()
        else:
            clash = {k: v for k, v in asked.items() if v is not None and v != cfg[k]}
            if clash:
                raise CurationError(
                    f"the split was frozen with {cfg}; refusing {clash}: a frozen test set cannot change"
                )
        if dedupe:
            self.find_near_duplicates(dup_threshold)

        ids, keys, splits, groups, reviewed = ds.values(["id", "page_key", "split", "dup_group", "reviewed"])
        by_group: dict[str, list[int]] = {}
        for i, (k, g) in enumerate(zip(keys, groups, strict=True)):
            by_group.setdefault(g or k, []).append(i)
        changes: dict[str, str] = {}
        assigned = moved = excluded = 0
        for gkey, idx in by_group.items():
            have = {splits[i] for i in idx if splits[i] in SPLITS}
            if "test" in have:
                target = "test"
            elif have:
                target = "train" if "train" in have else "val"
            else:
                target = split_for_key(gkey, cfg["test_fraction"], cfg["val_fraction"], cfg["seed"])
            for i in idx:
                cur = splits[i]
                if not reviewed[i] or cur in ("test", EXCLUDED, target):
                    continue
                if cur is None:
                    changes[ids[i]] = target
                    assigned += 1
                elif target == "test":  # trained on, yet duplicates a test page: set aside
                    changes[ids[i]] = EXCLUDED
                    excluded += 1
                else:  # val -> train inside a group (train/val are not frozen)
                    changes[ids[i]] = target
                    moved += 1
        if changes:
            ds.set_values("split", changes, key_field="id")
        self._sync_split_tags()
        counts = {s: len(ds.match(self.fo.ViewField("split") == s)) for s in (*SPLITS, EXCLUDED)}
        return {
            "dataset": self.name,
            **counts,
            "newly_assigned": assigned,
            "moved": moved,
            "newly_excluded": excluded,
            "config": cfg,
        }

    def _sync_split_tags(self) -> None:
        """Tags mirror the ``split`` field (manual tag edits in the App are reverted)."""
        F = self.fo.ViewField
        managed = [*SPLITS, EXCLUDED]
        self.dataset.untag_samples(managed)
        for s in managed:
            self.dataset.match(F("split") == s).tag_samples(s)

    # -- export ----------------------------------------------------------------------------------
    def export_yolo(
        self,
        out_dir: str | os.PathLike[str],
        version: str | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Write the reviewed pages as a YOLO dataset in ``<out_dir>/<version>/`` and return a summary.

        Layout: ``images/{train,val,test}``, ``labels/{train,val,test}`` (a negative page gets an
        empty label file), ``data.yaml`` (class names from the dataset's class list, no ``path`` so
        it resolves beside the yaml) and ``manifest.json`` (sha256 of every image and label file;
        ``data_version`` is the manifest's hash). ``version`` defaults to
        ``sha256-<first 16 hex of data_version>``. The split is brought up to date first (new pages
        get theirs); ``test`` pages only ever go to ``images/test``. An existing version folder is
        never overwritten: the same data again returns it (``reused``), other data raises.
        """
        import yaml

        import inkloop
        from inkloop.lifecycle.training import dataset_manifest

        split_summary = self.freeze_test_split()
        F = self.fo.ViewField
        view = self.reviewed().match(F("split").is_in(list(SPLITS)))
        keys, paths, splits, ws, hs, labels, boxes, versions = view.values(
            [
                "page_key",
                "filepath",
                "split",
                "page_width",
                "page_height",
                "ground_truth.detections.label",
                "ground_truth.detections.bounding_box",
                "model_version",
            ]
        )
        classes = self.classes
        class_ids = {c: i for i, c in enumerate(classes)}
        unknown = sorted({lab for labs in labels for lab in (labs or []) if lab not in class_ids})
        if unknown:
            raise CurationError(f"ground truth has labels outside the class list {classes}: {unknown}")
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise CurationError(f"{len(missing)} page images are missing, e.g. {missing[:3]}")
        if version is not None and (not version or "/" in version or version.startswith(".")):
            raise CurationError(f"bad version name {version!r}")

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".tmp-{uuid.uuid4().hex[:12]}"
        try:
            for s in SPLITS:
                (tmp / "images" / s).mkdir(parents=True)
                (tmp / "labels" / s).mkdir(parents=True)
            stems: set[str] = set()
            pages: dict[str, list[str]] = {s: [] for s in SPLITS}
            n_boxes = negatives = dropped = 0
            for key, src, split, w, h, labs, bxs in zip(
                keys, paths, splits, ws, hs, labels, boxes, strict=True
            ):
                stem = _safe_stem(key)
                if stem in stems:  # two keys that sanitise alike: disambiguate by the key's hash
                    stem = f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
                stems.add(stem)
                shutil.copyfile(src, tmp / "images" / split / f"{stem}{Path(src).suffix.lower()}")
                lines = []
                for lab, box in zip(labs or [], bxs or [], strict=True):
                    x0, y0, x1, y1 = _clip(from_fiftyone(box, w, h), w, h)
                    if x1 - x0 <= 0 or y1 - y0 <= 0:
                        dropped += 1  # entirely outside the page
                        continue
                    lines.append(format_line(class_ids[lab], to_yolo((x0, y0, x1, y1), w, h)))
                (tmp / "labels" / split / f"{stem}.txt").write_text("".join(ln + "\n" for ln in lines))
                n_boxes += len(lines)
                negatives += not lines
                pages[split].append(key)
                if progress:
                    progress(1)
            manifest = dataset_manifest(tmp)
            digest = str(manifest["data_version"]).split(":", 1)[-1]
            name = version or f"sha256-{digest[:16]}"
            final = out / name
            counts = {s: len(v) for s, v in pages.items()}
            summary: dict[str, Any] = {
                "dataset": self.name,
                "version": name,
                "data_version": manifest["data_version"],
                "path": str(final.resolve()),
                "data_yaml": str((final / "data.yaml").resolve()),
                "splits": counts,
                "boxes": n_boxes,
                "negatives": negatives,
                "dropped_boxes": dropped,
                "files": len(manifest["files"]),
                "reused": False,
                "warnings": [],
            }
            if not counts["train"] or not counts["val"]:
                summary["warnings"].append("train or val is empty: ultralytics cannot train on this export")
            if split_summary.get(EXCLUDED):
                summary["warnings"].append(
                    f"{split_summary[EXCLUDED]} page(s) excluded: near-duplicates of test pages"
                )
            if final.exists():
                old = final / "manifest.json"
                prev = json.loads(old.read_text()) if old.is_file() else {}
                if prev.get("data_version") == manifest["data_version"]:
                    shutil.rmtree(tmp)
                    summary["reused"] = True
                    return summary
                raise CurationError(f"{final} exists with other data; versions are never overwritten")
            (tmp / "data.yaml").write_text(
                yaml.safe_dump(
                    {
                        "train": "images/train",
                        "val": "images/val",
                        "test": "images/test",
                        "names": dict(enumerate(classes)),
                    },
                    sort_keys=False,
                )
            )
            doc = {
                "version": name,
                "data_version": manifest["data_version"],
                "dataset": self.name,
                "created_at": _now(),
                "inkloop_version": inkloop.__version__,
                "classes": classes,
                "splits": counts,
                "boxes": n_boxes,
                "negatives": negatives,
                "dropped_boxes": dropped,
                "split_config": self.split_config(),
                "model_versions": sorted({v for v in versions if v}),
                "pages": pages,
                "files": manifest["files"],
            }
            (tmp / "manifest.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
            try:
                os.rename(tmp, final)
            except OSError as exc:  # another export of the same name won the race
                raise CurationError(
                    f"{final} appeared while exporting; versions are never overwritten"
                ) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        exports = list(self.dataset.info.get("inkloop_exports", []))
        exports.append(
            {k: summary[k] for k in ("version", "data_version", "path", "splits")} | {"at": _now()}
        )
        self.dataset.info["inkloop_exports"] = exports[-100:]
        self.dataset.save()
        return summary


# --------------------------------------------------------------------------------------------
# From a results folder


def page_image_name(result: PageResult) -> str:
    """The PNG name of a page image; the same as review's, so images rendered once serve both."""
    return f"{result.page.doc_id[:16]}-p{result.page.index + 1}.png"


def render_pages(
    results: Sequence[PageResult],
    out_dir: str | os.PathLike[str],
    dpi: float = 150.0,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Path], dict[str, str]]:
    """Page images for people (PNG, reading resolution) for the given results, once per page.

    Existing PNGs are reused (``inkloop review push`` renders the same names into
    ``RESULTS/review-images``). Returns ``{page_key: path}`` and ``{source: reason}`` for
    documents that could not be opened any more (moved, deleted).
    """
    from inkloop.detection.outputs import write_png
    from inkloop.documents.opening import DocumentError, open_document

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    failed: dict[str, str] = {}
    todo: dict[str, list[PageResult]] = {}
    for r in results:
        p = out / page_image_name(r)
        if p.is_file():
            paths[r.page_key] = p
            if progress:
                progress(1)
        else:
            todo.setdefault(r.source, []).append(r)
    for source, rs in todo.items():
        try:
            with open_document(source, people_dpi=dpi) as doc:
                for r in rs:
                    p = out / page_image_name(r)
                    write_png(doc.render_for_people(r.page.index), p)
                    paths[r.page_key] = p
                    if progress:
                        progress(1)
        except (DocumentError, OSError) as exc:
            failed[source] = str(exc)
            if progress:
                progress(len([r for r in rs if r.page_key not in paths]))
    return paths, failed


def import_results(
    store: CurationStore,
    results_dir: str | os.PathLike[str],
    reviews: str | os.PathLike[str] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    dpi: float = 150.0,
    reviewed_only: bool = False,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Upsert a results folder (and optionally a reviews file from ``inkloop review pull``).

    Page images are rendered into ``images_dir`` (default ``RESULTS/review-images``, shared with
    review). Reviews of pages not in this results folder update samples already in the dataset.
    ``reviewed_only`` imports only the pages that have a review.
    """
    from inkloop.detection.results import read_results
    from inkloop.review.labelstudio import read_reviews

    results_path = Path(results_dir)
    if not (results_path / "results.jsonl").is_file():
        raise FileNotFoundError(f"{results_path} has no results.jsonl (run `inkloop detect` first)")
    results = read_results(results_path)
    by_key = {r.page_key: r for r in read_reviews(reviews)} if reviews else {}
    chosen = [r for r in results if r.page_key in by_key] if reviewed_only else results
    images = Path(images_dir) if images_dir else results_path / "review-images"
    paths, failed = render_pages(chosen, images, dpi=dpi, progress=progress)
    records = [
        PageRecord.from_result(r, paths[r.page_key], by_key.get(r.page_key))
        for r in chosen
        if r.page_key in paths
    ]
    counts = store.upsert_pages(records)
    in_results = {r.page_key for r in results}
    later = store.apply_reviews(v for k, v in by_key.items() if k not in in_results)
    return {
        "dataset": store.name,
        "results": str(results_path),
        "pages": len(chosen),
        **counts,
        "reviews": len(by_key),
        "reviews_applied_to_existing": later["updated"],
        "reviews_unknown": later["unknown"],
        "images_dir": str(images),
        "unrenderable_sources": failed,
    }


def curate_cycle(
    results_dir: str | os.PathLike[str],
    reviews: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    dataset: str = "inkloop",
    find_issues: bool = True,
) -> dict[str, Any]:
    """One curation step of the loop (what the review-sync DAG runs): import the run's results and
    the pulled reviews, evaluate the model on reviewed pages, flag duplicates and likely label
    mistakes, and export a versioned YOLO training set (frozen test split kept apart)."""
    store = CurationStore(dataset)
    imported = import_results(store, results_dir, reviews=reviews)
    evaluation = store.evaluate() if store.reviewed().count() else {}
    issues = store.find_issues() if find_issues and store.reviewed().count() > 1 else {}
    export = store.export_yolo(export_dir)
    return {
        "dataset": dataset,
        "imported": imported,
        "evaluation": evaluation,
        "issues": issues,
        "export": export,
    }
