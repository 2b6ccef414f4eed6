"""What the curation dataset is made of: page records, split assignment, thumbnail embeddings,
constants and errors shared by every part of the store."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from inkloop.types import Detection, PageResult

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
    #: ``scan`` or ``digital`` (:mod:`inkloop.documents.domain`); None leaves a sample's as it is.
    domain: str | None = None

    @property
    def has_review(self) -> bool:
        return self.review_status is not None or self.ground_truth is not None

    @classmethod
    def from_result(
        cls,
        result: PageResult,
        image: str | os.PathLike[str],
        review: ReviewedPage | None = None,
        domain: str | None = None,
    ) -> PageRecord:
        """A record from a detection result and, optionally, its Label Studio review and the
        page's domain."""
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
            domain=domain,
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


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
