"""The local media cache: page images stored in a bucket, on the local disk FiftyOne reads.

Why a cache: FiftyOne's open-source edition opens every sample's ``filepath`` on a local disk
(the App, metadata, the thumbnails Brain embeds, exports), while the pages themselves live where
the results folder is, often ``s3://…/review-images``. So every stored image a sample shows is
copied once to this machine, and the sample keeps both: ``filepath`` (the local copy) and
``media_url`` (where the image is stored, the source of truth).

Layout (``$INKLOOP_MEDIA_CACHE``, else ``$XDG_CACHE_HOME/inkloop/media``, i.e.
``~/.cache/inkloop/media``):

- ``objects/<h[:2]>/<h><suffix>``: the images, **content-addressed** (``h`` is the SHA-256 of the
  bytes). A sample's ``filepath`` changes exactly when its image's content does, so an image
  replaced in the bucket gets a new path and a fresh thumbnail embedding, and the same image under
  two URLs is kept once.
- ``urls/<u[:2]>/<u>.json`` (``u`` = SHA-256 of the URL): what was fetched from a URL, with the
  object's identity (ETag, else size and modification time) and the content hash.

Reuse: a URL whose object still has the recorded identity is not downloaded again (one listing
per folder answers for all its images; no byte is read). Clearing: delete the folder, or
``inkloop curate media-cache --clear`` (:meth:`MediaCache.clear`); nothing is lost, since the
bucket holds every image: :meth:`~inkloop.curation.dataset.DatasetSync.ensure_media` fetches the
missing copies again from the samples' ``media_url`` (export and find-issues do it first), and
content addressing puts each at the path its sample already names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from inkloop import storage
from inkloop.documents.hashing import copy_hashing
from inkloop.storage.cache import cache_dir

CACHE_ENV = "INKLOOP_MEDIA_CACHE"


def default_media_cache_dir() -> Path:
    """``$INKLOOP_MEDIA_CACHE``, else ``$XDG_CACHE_HOME/inkloop/media`` (``~/.cache/inkloop/media``)."""
    return cache_dir(CACHE_ENV, "media")


def _identity(info: Mapping[str, Any]) -> dict[str, Any]:
    """What says an object is unchanged without reading it: its ETag where the store gives one,
    else its size and modification time."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    if etag:
        return {"etag": str(etag).strip('"'), "size": info.get("size")}
    mtime = info.get("LastModified") or info.get("mtime") or info.get("updated")
    return {"size": info.get("size"), "mtime": str(mtime)}


def _suffix(url: str) -> str:
    name = url.split("?", 1)[0].rsplit("/", 1)[-1]
    suffix = os.path.splitext(name)[1].lower()
    return suffix if suffix.isascii() and len(suffix) <= 8 else ""


class MediaCache:
    """Local copies of stored page images, content-addressed (see the module docstring).

    A local path is not a URL and is never copied: :meth:`local` returns it (resolved) as it is.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_media_cache_dir()

    def __repr__(self) -> str:
        return f"MediaCache({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------
    def _object_path(self, digest: str, suffix: str) -> Path:
        return self.root / "objects" / digest[:2] / f"{digest}{suffix}"

    def _entry_path(self, url: str) -> Path:
        u = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.root / "urls" / u[:2] / f"{u}.json"

    def _entry(self, url: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._entry_path(url).read_text()))
        except (FileNotFoundError, ValueError):
            return None

    # -- fetching ------------------------------------------------------------------------------
    def local(self, url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> str:
        """The local file for an image: a local path as is (resolved); a stored one's cached copy,
        downloaded when missing or changed. A missing object raises
        :class:`~inkloop.storage.StorageError` naming the URL."""
        return self.local_many([url], options)[os.fspath(url)]

    def local_many(
        self, urls: Iterable[str | os.PathLike[str]], options: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """:meth:`local` for many images: ``{url: local path}``. Stored images are looked up with
        one listing per folder (their identities), then only new or changed ones are downloaded."""
        out: dict[str, str] = {}
        by_folder: dict[str, list[str]] = {}
        for u in urls:
            s = os.fspath(u)
            if not storage.is_url(s):
                out[s] = str(Path(storage.local_path(s) or s).resolve())
                continue
            by_folder.setdefault(s.rsplit("/", 1)[0], []).append(s)
        for folder, members in by_folder.items():
            infos = self._folder_infos(folder, options)
            for s in members:
                info = infos.get(s.rsplit("/", 1)[-1])
                if info is None:  # not in the listing (just written, or gone): ask for it alone
                    info = storage.info(s, options)
                    if info is None:
                        raise storage.StorageError(s, "not found (missing or deleted)", "read", "not_found")
                out[s] = str(self._fetch(s, info, options))
        return out

    def _folder_infos(self, folder: str, options: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
        fs, path = storage.url_to_fs(folder, options)
        with storage.translated(folder, "list"):
            fs.invalidate_cache(path)
            try:
                entries = fs.ls(path, detail=True)
            except FileNotFoundError:
                return {}
        return {str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: dict(e) for e in entries}

    def _fetch(self, url: str, info: Mapping[str, Any], options: Mapping[str, Any] | None) -> Path:
        ident = _identity(info)
        entry = self._entry(url)
        if entry is not None and entry.get("identity") == ident:
            cached = self._object_path(entry["sha256"], entry.get("suffix", ""))
            if cached.is_file():
                return cached
        incoming = self.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        tmp = incoming / f".{uuid.uuid4().hex}"
        try:
            with storage.open_file(url, "rb", options) as src, open(tmp, "wb") as dst:
                digest = copy_hashing(src, dst)  # hashed as it is copied, not read back
            suffix = _suffix(url)
            target = self._object_path(digest, suffix)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)  # same content, same name: a concurrent fetch writes the same
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        record = {"url": url, "identity": ident, "sha256": digest, "suffix": suffix}
        storage.write_local_atomic(str(self._entry_path(url)), json.dumps(record).encode("utf-8"))
        return target

    # -- housekeeping --------------------------------------------------------------------------
    def usage(self) -> dict[str, Any]:
        """Where the cache is, how many images it holds and their bytes."""
        objects = [p for p in (self.root / "objects").rglob("*") if p.is_file()]
        return {
            "root": str(self.root),
            "images": len(objects),
            "bytes": sum(p.stat().st_size for p in objects),
        }

    def clear(self) -> dict[str, Any]:
        """Delete every cached copy (the bucket keeps the images); returns what was removed.
        Samples fetch theirs again on the next export or find-issues (``ensure_media``)."""
        before = self.usage()
        shutil.rmtree(self.root, ignore_errors=True)
        return before
