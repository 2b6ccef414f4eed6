"""What a review task is made of: the page image reviewers see and the task sent to Label Studio.

Why here, apart from the client: a task is data (the page, the model's boxes as a prediction with
``model_version`` and per-region scores, so reviewers correct rather than draw); rendering a page
is document work. Neither needs a server, and both are the same whichever way the image reaches
Label Studio (:mod:`inkloop.review.delivery`).

Page images are written and looked up through :mod:`inkloop.storage`: the images folder may be a
local folder or a storage URL (``s3://…/review-images``), found with one listing, not a request
per page.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from inkloop import storage
from inkloop.convert.labelstudio import prediction
from inkloop.types import PageResult

#: Tag names of the labeling config (:func:`inkloop.review.labeling.labeling_config`).
FROM_NAME = "label"
TO_NAME = "image"


def page_image_name(result: PageResult) -> str:
    """The PNG name of a page's review image (curation renders the same names into the same folder)."""
    return f"{result.page.doc_id[:16]}-p{result.page.index + 1}.png"


def task_for(result: PageResult, image: str) -> dict[str, Any]:
    """The Label Studio task for one page: the image reference, the page's identity (``page_key``,
    the idempotency key of a push), routing's reasons and the model's boxes as a prediction."""
    w, h = result.page.width, result.page.height
    return {
        "data": {
            "image": image,
            "page_key": result.page_key,
            "doc_id": result.page.doc_id,
            "page_index": result.page.index,
            "page_number": result.page.index + 1,
            "source": result.source,
            "page_width": w,
            "page_height": h,
            "model_version": result.model_version,
            "uncertainty": result.uncertainty,
            "reasons": ", ".join(result.reasons),
        },
        "predictions": [prediction(result.detections, w, h, result.model_version, FROM_NAME, TO_NAME)],
    }


@dataclass
class PageImages:
    """Renders review images (reading resolution, PNG) for page results, once per page_key.

    ``out_dir`` is a local folder or a storage URL; an image already there is reused."""

    out_dir: str | os.PathLike[str]
    dpi: float = 150.0
    rendered: dict[str, str] = field(default_factory=dict)

    def render(self, results: Sequence[PageResult]) -> list[tuple[PageResult, str]]:
        from inkloop.detection.outputs import write_png
        from inkloop.documents.opening import open_document

        by_source: dict[str, list[PageResult]] = {}
        for r in results:
            by_source.setdefault(r.source, []).append(r)
        there = set(storage.listdir(self.out_dir)) if results else set()
        for source, rs in by_source.items():
            missing = [r for r in rs if page_image_name(r) not in there]
            if not missing:
                continue  # every page already rendered: the document is not even opened (or fetched)
            with open_document(source, people_dpi=self.dpi) as doc:
                for r in missing:
                    name = page_image_name(r)
                    write_png(doc.render_for_people(r.page.index), storage.join(self.out_dir, name))
                    there.add(name)
        out: list[tuple[PageResult, str]] = []
        for rs in by_source.values():
            for r in rs:
                self.rendered[r.page_key] = storage.join(self.out_dir, page_image_name(r))
                out.append((r, self.rendered[r.page_key]))
        return out
