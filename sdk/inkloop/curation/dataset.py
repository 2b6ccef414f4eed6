"""The dataset and its sync: schema, views, stats, upserting pages and applying reviews."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inkloop import storage
from inkloop.convert.fiftyone import from_fiftyone, to_fiftyone
from inkloop.curation.database import check_database, import_fiftyone
from inkloop.curation.media import MediaCache
from inkloop.curation.records import (
    DEFAULT_CLASSES,
    EXCLUDED,
    SPLITS,
    CurationError,
    PageRecord,
    ProgressFn,
    _rescale,
)
from inkloop.evaluation.domains import UNKNOWN_DOMAIN
from inkloop.types import Detection

if TYPE_CHECKING:
    from inkloop.review.labelstudio import ReviewedPage


class DatasetSync:
    """The dataset and its sync: schema, views, stats, upserting pages and applying reviews.

    Part of :class:`~inkloop.curation.store.CurationStore`.

    Page images may be stored anywhere the storage layer reaches (``s3://…``): FiftyOne reads a
    local copy from ``media_cache`` (:class:`~inkloop.curation.media.MediaCache`, default
    ``$INKLOOP_MEDIA_CACHE``), and the sample keeps the stored URL in ``media_url``.
    ``storage_options`` reach the storage URLs the store reads (images) and writes (exports).
    """

    def __init__(
        self,
        dataset_name: str = "inkloop",
        classes: Sequence[str] = DEFAULT_CLASSES,
        create: bool = True,
        *,
        media_cache: MediaCache | str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.media = media_cache if isinstance(media_cache, MediaCache) else MediaCache(media_cache)
        self.storage_options: dict[str, Any] = dict(storage_options or {})
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
            "media_url": (fo.StringField, {}),
            "page_width": (fo.IntField, {}),
            "page_height": (fo.IntField, {}),
            "model_version": (fo.StringField, {}),
            "domain": (fo.StringField, {}),
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
            "domains": {(k or UNKNOWN_DOMAIN): n for k, n in ds.count_values("domain").items()},
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

    def _media_paths(self, records: Iterable[PageRecord]) -> dict[str, str]:
        """``{page_key: local image}``: local images as they are, stored ones from the cache."""
        recs = list(records)
        local = self.media.local_many([r.image for r in recs], self.storage_options)
        return {r.page_key: local[os.fspath(r.image)] for r in recs}

    def ensure_media(self, view: Any = None) -> dict[str, int]:
        """Fetch again the local copies of stored images that are gone (a cleared media cache,
        another machine): every sample with a ``media_url`` whose ``filepath`` is missing.
        Content addressing gives an unchanged image the same path; a changed one gets its new
        path (and loses its stale thumbnail embedding). Returns ``checked``/``fetched``."""
        samples = view if view is not None else self.dataset
        ids, paths, urls = samples.values(["id", "filepath", "media_url"])
        gone = {i: u for i, p, u in zip(ids, paths, urls, strict=True) if u and not os.path.isfile(p)}
        if gone:
            local = self.media.local_many(gone.values(), self.storage_options)
            moved = {i: local[u] for i, u in gone.items()}
            self.dataset.set_values("filepath", moved, key_field="id")
            old = dict(zip(ids, paths, strict=True))
            changed = {i: None for i, p in moved.items() if p != old[i]}
            if changed:
                self.dataset.set_values("thumb_embedding", changed, key_field="id")
        return {"checked": len(ids), "fetched": len(gone)}

    def _fill(self, s: Any, r: PageRecord, new: bool, local: str) -> None:
        path = Path(local)
        if new or s.filepath != str(path):
            s.filepath = str(path)
            s["thumb_embedding"] = None  # a new image needs a new embedding
            s.metadata = self._image_metadata(path)
        image = os.fspath(r.image)
        s["media_url"] = image if storage.is_url(image) else None
        s["page_key"] = r.page_key
        s["doc_id"] = r.doc_id
        s["page_index"] = r.page_index
        s["source"] = r.source
        s["page_width"] = int(r.width)
        s["page_height"] = int(r.height)
        s["model_version"] = r.model_version
        if r.domain is not None:  # unknown now (the source is gone): keep what an earlier import found
            s["domain"] = r.domain
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
        local = self._media_paths(latest.values())
        added = raced = 0
        for i in range(0, len(new), batch_size):
            chunk = new[i : i + batch_size]
            batch = []
            for r in chunk:
                s = self.fo.Sample(filepath=local[r.page_key])
                self._fill(s, r, new=True, local=local[r.page_key])
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
                self._fill(s, old[s.id], new=False, local=local[old[s.id].page_key])
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
            "domain": s["domain"],
            "tags": list(s.tags),
        }
