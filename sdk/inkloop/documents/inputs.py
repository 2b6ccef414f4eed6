"""Finding the documents to process: files, folders, globs and storage URLs expanded; media types
sniffed from the first bytes; an inbox split into batches for dynamic task mapping."""

from __future__ import annotations

from collections.abc import Iterable

from inkloop import storage

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
}


SUPPORTED_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def sniff_media_type(head: bytes) -> str | None:
    """Identify the format by its magic bytes; file names lie."""
    if head.startswith(b"%PDF-") or b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


is_url = storage.is_url


def expand_inputs(specs: Iterable[str]) -> list[str]:
    """Files named, folders walked (hidden files skipped), globs expanded; order is stable.

    A spec that matches nothing is returned as is, so the pipeline can quarantine it as
    "not found" instead of forgetting it. A storage URL stays a URL (never a local path), and a
    storage that cannot be listed (endpoint down, bucket missing, access denied) raises
    :class:`~inkloop.storage.StorageError` naming it: an inbox that cannot be read is not empty.
    """
    out: list[str] = []
    for spec in specs:
        spec = str(spec)
        fs, path = storage.url_to_fs(spec)
        protocol = spec.split("://", 1)[0] + "://" if is_url(spec) else ""
        with storage.translated(spec, "list"):
            if any(c in path for c in "*?["):
                matches = [m for m in sorted(fs.glob(path)) if fs.isfile(m)]
            else:
                info = storage.info(spec)
                if info is None or info.get("type") != "directory":
                    out.append(spec)
                    continue
                matches = sorted(fs.find(path))
        for m in matches:
            if not m.rstrip("/").rsplit("/", 1)[-1].startswith("."):
                out.append(protocol + m if protocol else m)
    seen: set[str] = set()
    return [s for s in out if not (s in seen or seen.add(s))]


def plan_batches(
    inbox: str | Iterable[str], docs_per_batch: int = 20, max_batches: int | None = None
) -> list[list[str]]:
    """Split an inbox listing into batches for dynamic task mapping (one mapped task per batch)."""
    specs = [inbox] if isinstance(inbox, str) else list(inbox)
    files = expand_inputs(specs)
    if docs_per_batch < 1:
        raise ValueError("docs_per_batch must be at least 1")
    if max_batches and len(files) > docs_per_batch * max_batches:
        docs_per_batch = -(-len(files) // max_batches)
    return [files[i : i + docs_per_batch] for i in range(0, len(files), docs_per_batch)]
