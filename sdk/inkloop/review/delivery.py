"""How page images reach Label Studio: a push takes the way as a parameter.

Why a parameter and not a flag inside the push: Label Studio can get a task's image in several
ways, each with its own checks and server-side setup, and the push (find the project, skip pages
already there, import tasks in chunks, undo a half-made project) is the same for all of them.

- :class:`Upload` (the default, ``"upload"``): each image is read (a local file or a storage URL,
  through :mod:`inkloop.storage`) and uploaded to the project; fine for small setups.
- :class:`LocalFiles` (``"local-files"``): the image stays on a disk Label Studio serves
  (``LOCAL_FILES_DOCUMENT_ROOT``); a Local Storage is added to the project for its folder.
- :class:`AsGiven` (``"url"``): the reference goes into the task as it is (``http(s)://``, or a
  storage URL Label Studio resolves through a cloud storage connected to the project).

Anything with the :class:`PageDelivery` methods can be passed instead (an S3 source storage on the
results bucket, say): ``check`` runs before anything is created on the server, ``reference`` once
per page as tasks are imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from inkloop import storage

if TYPE_CHECKING:
    from inkloop.review.client import LabelStudioClient

#: The built-in ways, by the name the CLI and the operator take.
ImageDelivery = Literal["upload", "local-files", "url"]


@runtime_checkable
class PageDelivery(Protocol):
    """A way for page images to reach Label Studio."""

    def check(self, images: Sequence[str]) -> None:
        """Raise (naming the image and the reason) if a page cannot be delivered; runs before the
        push creates anything, so a bad image leaves no project behind."""

    def reference(self, client: LabelStudioClient, image: str) -> str:
        """What the task's ``image`` field holds for ``image`` (uploading or connecting storage
        on ``client``'s project as needed)."""


def require_files(images: Sequence[str]) -> None:
    """Every image is a file (local or in storage): :class:`FileNotFoundError` naming the missing
    ones; a storage failure (unreachable, denied …) raises :class:`inkloop.storage.StorageError`."""
    missing = [img for img in images if (storage.info(img) or {}).get("type") != "file"]
    if missing:
        raise FileNotFoundError(f"page image not found: {', '.join(missing[:5])}")


@dataclass(frozen=True)
class Upload:
    """Upload every page image into the project (read through the storage layer)."""

    def check(self, images: Sequence[str]) -> None:
        require_files(images)

    def reference(self, client: LabelStudioClient, image: str) -> str:
        return client.upload_image(image)


@dataclass(frozen=True)
class LocalFiles:
    """Serve page images from the Label Studio server's ``LOCAL_FILES_DOCUMENT_ROOT``."""

    document_root: str | os.PathLike[str]

    def check(self, images: Sequence[str]) -> None:
        urls = [img for img in images if storage.is_url(img)]
        if urls:
            raise ValueError(
                f"local-files delivery serves files on the Label Studio server's disk, not {urls[0]}: "
                "render the page images under its document root, or upload them"
            )
        require_files(images)
        root = Path(self.document_root).resolve()
        outside = [img for img in images if not Path(img).resolve().is_relative_to(root)]
        if outside:
            raise ValueError(f"page image {outside[0]} is not under the document root {root}")

    def reference(self, client: LabelStudioClient, image: str) -> str:
        path = Path(image).resolve()
        rel = path.relative_to(Path(self.document_root).resolve())
        client.ensure_local_storage(path.parent)
        return f"/data/local-files/?d={rel.as_posix()}"


@dataclass(frozen=True)
class AsGiven:
    """Put each image's reference into its task as it is (Label Studio fetches or resolves it)."""

    def check(self, images: Sequence[str]) -> None:
        return None

    def reference(self, client: LabelStudioClient, image: str) -> str:
        return image


def page_delivery(
    delivery: ImageDelivery | PageDelivery, document_root: str | os.PathLike[str] | None = None
) -> PageDelivery:
    """A built-in way by name (``document_root`` for ``local-files``), or ``delivery`` itself."""
    if not isinstance(delivery, str):
        return delivery
    if delivery == "upload":
        return Upload()
    if delivery == "url":
        return AsGiven()
    if delivery == "local-files":
        if document_root is None:
            raise ValueError(
                "local-files delivery needs document_root (the server's LOCAL_FILES_DOCUMENT_ROOT)"
            )
        return LocalFiles(document_root)
    raise ValueError(f"unknown page delivery {delivery!r}: upload, local-files or url")
