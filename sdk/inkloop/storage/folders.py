"""Whole folders between a local disk and a storage location: scratch copies for tools that need
local files (ultralytics trains on local images; FiftyOne's open-source edition reads local media),
and uploads of what they wrote.

Why here, beside the storage layer: the same two moves (bring a stored dataset down, put a run
folder up) serve curation and training, and both must keep a URL a string (see
:mod:`inkloop.storage`). Errors are :class:`~inkloop.storage.StorageError`, naming the URL.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from inkloop.storage import StorageError, find, is_url, join, translated, url_to_fs

__all__ = ["download_folder", "upload_folder"]


def _relative(found: str, base: str) -> str:
    """``found`` (a file under ``base``, spelled like ``base``) relative to ``base``."""
    prefix = base.rstrip("/") + "/"
    if not found.startswith(prefix):  # fsspec spells some roots differently: compare by path only
        found_path, base_path = found.split("://", 1)[-1], prefix.split("://", 1)[-1]
        if not found_path.startswith(base_path):
            raise StorageError(found, f"listed under {base} but not inside it", "list")
        return found_path[len(base_path) :]
    return found[len(prefix) :]


def download_folder(
    url: str | os.PathLike[str],
    local_dir: str | os.PathLike[str],
    options: Mapping[str, Any] | None = None,
    *,
    keep: Callable[[str], bool] | None = None,
) -> list[str]:
    """Copy every file under the folder ``url`` into ``local_dir`` (same relative layout); returns
    the relative paths copied, sorted. ``keep(relative_path)`` picks files (default: all).

    An empty or missing folder raises :class:`StorageError` (``not_found``): a training or an export
    that silently found nothing would fail later with a less useful message.
    """
    src = os.fspath(url)
    if not is_url(src):  # fsspec lists local files by absolute path
        src = os.path.abspath(src.removeprefix("file://"))
    dest = os.fspath(local_dir)
    files = find(src, options)
    if not files:
        raise StorageError(src, "no files there (missing or empty folder)", "read", "not_found")
    fs, _ = url_to_fs(src, options)
    copied = []
    for found in files:
        rel = _relative(found, src)
        if keep is not None and not keep(rel):
            continue
        target = os.path.join(dest, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        _, path = url_to_fs(found, options)
        with translated(found, "download"):
            fs.get_file(path, target)
        copied.append(rel)
    return sorted(copied)


def upload_folder(
    local_dir: str | os.PathLike[str],
    url: str | os.PathLike[str],
    options: Mapping[str, Any] | None = None,
    *,
    keep: Callable[[str], bool] | None = None,
    last: tuple[str, ...] = (),
) -> list[str]:
    """Copy every file under ``local_dir`` to the folder ``url`` (one PUT per file, streamed);
    returns the relative paths written, in the order written.

    ``last``: relative paths written after all others (a marker such as ``manifest.json`` that
    says the folder is complete: object stores have no rename to publish a folder at once).
    A local ``url`` gets plain copies (callers keep their own atomic rename where they have one).
    """
    src = os.fspath(local_dir)
    dest = os.fspath(url)
    names = []
    for folder, _dirs, files in os.walk(src):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), src).replace(os.sep, "/")
            if keep is None or keep(rel):
                names.append(rel)
    names.sort(key=lambda rel: (rel in last, last.index(rel) if rel in last else 0, rel))
    fs, _ = url_to_fs(dest, options)
    for rel in names:
        target = join(dest, rel)
        local = os.path.join(src, *rel.split("/"))
        if not is_url(dest):
            os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
            shutil.copyfile(local, target)
            continue
        _, path = url_to_fs(target, options)
        with translated(target, "upload to"):
            fs.put_file(local, path)
            fs.invalidate_cache(path)
    return names
