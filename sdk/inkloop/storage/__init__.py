"""One storage layer: local folders and storage URLs (``s3://``, ``gs://``, ``memory://`` …) alike.

Why a layer of its own: a results folder, an inbox or ``INKLOOP_DATA`` may be a bucket, and every
stage must read and write there the same way. Three rules hold everywhere:

- **A URL stays a string.** ``pathlib.Path("s3://b/k")`` is ``s3:/b/k``: a local folder named
  ``s3:`` that swallows a run's results without an error. :func:`join` builds URLs; a local path is
  only made for a location that *is* local (:func:`local_path`).
- **Options come the way users give them**: explicit ``storage_options`` first, then fsspec's own
  configuration (``FSSPEC_S3='{"endpoint_url": …}'`` or ``~/.config/fsspec``), then the
  environment every AWS tool reads (``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``). The environment is
  passed explicitly because fsspec caches a filesystem by its arguments: a client made before the
  environment changed would otherwise keep talking to the old endpoint.
- **Errors name the URL and the reason** (:class:`StorageError`): unreachable endpoint, refused
  credentials, access denied, missing bucket, object gone. fsspec's ``exists`` answers False for
  all of them; here only "not there" is False, anything else raises.

Writes are durable and all-or-nothing: on a local disk a temporary file, fsync, ``os.replace``;
on object stores one PUT, which the store applies atomically. Object stores have no append and no
rename: :func:`append_bytes` writes a new object (server-side concatenation where the store has
it), so callers design for immutable objects plus merges.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "StorageError",
    "append_bytes",
    "append_log",
    "delete",
    "download",
    "exists",
    "file_name",
    "find",
    "fsync_dir",
    "info",
    "is_url",
    "join",
    "jsonl_bytes",
    "listdir",
    "local_path",
    "log_exists",
    "log_segments",
    "open_file",
    "read_bytes",
    "read_jsonl",
    "read_log",
    "read_text",
    "read_text_if_exists",
    "require_folder",
    "scoped_options",
    "storage_options",
    "translated",
    "url_to_fs",
    "write_bytes",
    "write_jsonl",
    "write_local",
    "write_local_atomic",
    "write_log",
    "write_text",
]

#: Environment variables → s3fs options (see the module docstring for why they are passed on).
_S3_ENV = (
    ("endpoint_url", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")),
    ("key", ("AWS_ACCESS_KEY_ID",)),
    ("secret", ("AWS_SECRET_ACCESS_KEY",)),
    ("token", ("AWS_SESSION_TOKEN",)),
)
#: S3 refuses a multipart part under 5 MiB (all but the last): below that, append re-uploads.
_S3_MIN_PART = 5 * 2**20


class StorageError(OSError):
    """A storage operation failed; the message names the URL and the reason for people.

    ``kind`` for programs: ``unreachable``, ``credentials``, ``denied``, ``no_bucket``,
    ``not_found``, ``unavailable`` (no filesystem for the URL) or ``other``.
    """

    def __init__(self, url: str, reason: str, action: str = "access", kind: str = "other") -> None:
        self.url, self.reason, self.action, self.kind = url, reason, action, kind
        super().__init__(f"cannot {action} {url}: {reason}")


#: Options given for a block of work (:func:`scoped_options`), applied to every storage URL in it.
_SCOPED: list[dict[str, Any]] = []


def is_url(spec: str | os.PathLike[str]) -> bool:
    """True for a storage URL (``s3://…``); False for a local path and for ``file://``."""
    s = os.fspath(spec)
    return "://" in s and not s.startswith("file://")


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] if is_url(url) else "file"


@contextlib.contextmanager
def scoped_options(options: Mapping[str, Any] | None) -> Iterator[None]:
    """Use ``options`` for every storage URL (not local paths) opened in the block, by any thread.

    Why: a run reads its inbox, opens documents and writes results in several modules and
    threads; the storage options a caller gives once (``detect(..., storage_options=…)``) must
    reach all of them. Process-wide, so one run with options at a time.
    """
    if not options:
        yield
        return
    entry = dict(options)
    _SCOPED.append(entry)
    try:
        yield
    finally:
        _SCOPED.remove(entry)


def storage_options(url: str, explicit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options a filesystem for ``url`` is made with: ``explicit``, over the block's
    (:func:`scoped_options`), over fsspec's configuration (applied by fsspec itself), over the
    environment (AWS variables, for ``s3://``)."""
    opts: dict[str, Any] = {}
    if is_url(url):
        for scoped in _SCOPED:
            opts.update(scoped)
    opts.update(explicit or {})
    protocol = _protocol(url)
    if protocol in ("s3", "s3a"):
        configured = fsspec.config.conf.get("s3", {})
        # a profile or anonymous access chosen in options means: not the environment's keys
        own_identity = any(k in opts or k in configured for k in ("anon", "profile"))
        for option, names in _S3_ENV:
            if option in opts or option in configured or (own_identity and option != "endpoint_url"):
                continue
            value = next((os.environ[n] for n in names if os.environ.get(n)), None)
            if value:
                opts[option] = value
    return opts


def url_to_fs(
    url: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> tuple[AbstractFileSystem, str]:
    """The filesystem and the path inside it for a local path or storage URL."""
    s = os.fspath(url)
    try:
        return fsspec.core.url_to_fs(s, **storage_options(s, options))
    except ImportError as exc:
        hint = " (pip install 'inkloop[s3]')" if _protocol(s).startswith("s3") else ""
        raise StorageError(s, f"no filesystem for this URL: {exc}{hint}", kind="unavailable") from exc
    except ValueError as exc:
        raise StorageError(s, f"not a storage URL fsspec knows: {exc}", kind="unavailable") from exc


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base/part/…`` for local paths and URLs alike (never through pathlib, see the module doc)."""
    out = os.fspath(base)
    for p in parts:
        p = p.strip("/")
        if p:
            out = f"{out.rstrip('/')}/{p}" if out else p
    return out


def file_name(url: str | os.PathLike[str]) -> str:
    """The last part of a local path or storage URL, query and trailing ``/`` dropped ('' for none):
    what a download, an upload or an output file is named after, spelled the same everywhere."""
    return os.fspath(url).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def local_path(url: str | os.PathLike[str]) -> str | None:
    """The local path of a local location (``file://`` stripped); None for a storage URL."""
    s = os.fspath(url)
    if is_url(s):
        return None
    return s.removeprefix("file://")


def _classify(exc: BaseException, url: str) -> tuple[str, str]:
    """``(kind, a sentence for people)`` from what the storage client raised."""
    text = f"{exc.__class__.__name__}: {exc}"
    chain = f"{text} {exc.__cause__!r} {exc.__context__!r}"
    if any(s in chain for s in ("EndpointConnectionError", "ConnectTimeout", "ClientConnector")) or (
        isinstance(exc, ConnectionError)
    ):
        return "unreachable", f"storage endpoint unreachable ({exc})"
    if "NoSuchBucket" in chain or "bucket does not exist" in chain:
        return "no_bucket", f"bucket {url.split('://', 1)[-1].split('/', 1)[0]!r} does not exist"
    if any(s in chain for s in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId")):
        return "credentials", f"credentials refused ({exc})"
    if "NoCredentialsError" in chain or "Unable to locate credentials" in chain:
        return (
            "credentials",
            "no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or storage options)",
        )
    if isinstance(exc, PermissionError) or "AccessDenied" in chain:
        return "denied", f"access denied ({exc})"
    if isinstance(exc, FileNotFoundError):
        return "not_found", "not found (missing or deleted)"
    if isinstance(exc, IsADirectoryError):
        return "other", "is a folder, not a file"
    return "other", text


def _error(exc: BaseException, url: str, action: str = "access") -> StorageError:
    kind, reason = _classify(exc, url)
    return StorageError(url, reason, action, kind)


@contextlib.contextmanager
def translated(url: str, action: str) -> Iterator[None]:
    """Turn what a storage client raises in the block into a :class:`StorageError` on ``url``."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        raise _error(exc, url, action) from exc


def _info(fs: AbstractFileSystem, path: str, url: str) -> dict[str, Any] | None:
    """``fs.info`` or None when there is nothing at ``path``; a missing bucket and every other
    failure raise (fsspec's ``exists`` would answer False for an unreachable endpoint)."""
    fs.invalidate_cache(path)
    try:
        return dict(fs.info(path))
    except FileNotFoundError as exc:
        if _no_bucket(exc):
            raise _error(exc, url) from exc
        return None
    except Exception as exc:
        raise _error(exc, url) from exc


def info(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """fsspec's ``info`` (``type``, ``size`` …) or None when nothing is at ``url``; a missing bucket
    or any other failure raises :class:`StorageError`."""
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    return _info(fs, path, s)


def exists(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> bool:
    """True if a file or folder is at ``url``; False if nothing is; :class:`StorageError` otherwise."""
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    return _info(fs, path, s) is not None


def require_folder(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> str:
    """Make sure a folder can be written at ``url`` before a run starts; return ``url``.

    Local: created. Object store: the bucket must exist and answer (a folder is only a prefix
    there), so an unreachable endpoint, refused credentials or a missing bucket are reported
    before any work is done rather than after it.
    """
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    if isinstance(fs, LocalFileSystem):
        with translated(s, "create the folder"):
            os.makedirs(path, exist_ok=True)
        return s
    bucket = path.split("/", 1)[0]
    with translated(s, "reach"):
        fs.invalidate_cache(bucket)
        fs.ls(bucket, detail=False)  # raises for a missing bucket, bad credentials, no endpoint
    return s


def _full(fs: AbstractFileSystem, path: str, like: str) -> str:
    """A path fsspec returned, spelled like the caller's location (a URL stays a URL)."""
    if isinstance(fs, LocalFileSystem):
        return path
    return fs.unstrip_protocol(path) if is_url(like) else path


def _no_bucket(exc: BaseException) -> bool:
    chain = f"{exc} {exc.__cause__!r}"
    return "NoSuchBucket" in chain or "bucket does not exist" in chain


def listdir(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> list[str]:
    """Names of the entries directly in a folder, sorted; ``[]`` if the folder does not exist
    (a missing bucket is an error, not an empty folder)."""
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    with translated(s, "list"):
        fs.invalidate_cache(path)
        try:
            entries = fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError) as exc:
            if _no_bucket(exc):
                raise
            return []
    base = path.rstrip("/")
    return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries if e.rstrip("/") != base)


def find(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> list[str]:
    """Every file under a folder (recursively), as locations spelled like ``url``, sorted."""
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    with translated(s, "list"):
        fs.invalidate_cache(path)
        found = fs.find(path)
    return sorted(_full(fs, f, s) for f in found)


def open_file(
    url: str | os.PathLike[str], mode: str = "rb", options: Mapping[str, Any] | None = None
) -> IO[Any]:
    """An open file object (reading, or writing a whole new file). Use :func:`write_bytes` for
    durable writes: a file opened for writing here is only as atomic as the store makes it."""
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    with translated(s, "open"):
        if "w" in mode and isinstance(fs, LocalFileSystem):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return fs.open(path, mode)  # type: ignore[no-any-return]


def download(
    url: str | os.PathLike[str], folder: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> str:
    """Copy a stored file into the local ``folder`` under its own name (``document`` when it has
    none), streamed in 1 MiB chunks; returns the local path. A missing file raises
    :class:`StorageError` with ``kind`` ``not_found``."""
    import shutil

    s = os.fspath(url)
    local = os.path.join(os.fspath(folder), file_name(s) or "document")
    with open_file(s, "rb", options) as src, open(local, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return local


def read_bytes(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> bytes:
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    with translated(s, "read"):
        return bytes(fs.cat_file(path))


def read_text(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> str:
    return read_bytes(url, options).decode("utf-8")


def read_text_if_exists(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> str | None:
    """:func:`read_text`, or None when nothing is at ``url``: one request, no separate
    :func:`exists` (other failures still raise :class:`StorageError`)."""
    try:
        return read_text(url, options)
    except StorageError as exc:
        if exc.kind != "not_found":
            raise
        return None


def write_local(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a local file and fsync it (before anyone renames it into view)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in ``path`` durable; a no-op where folders cannot be opened (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_local_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to a local ``path`` all-or-nothing: a temporary file beside it, fsync,
    ``os.replace`` (readers see the old file or the new one, never half of it)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
    try:
        write_local(tmp, data)
        os.replace(tmp, path)
        fsync_dir(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(url: str | os.PathLike[str], data: bytes, options: Mapping[str, Any] | None = None) -> str:
    """Durably write a whole file: atomic rename locally, one PUT on object stores. Returns ``url``."""
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    with translated(s, "write"):
        if isinstance(fs, LocalFileSystem):
            write_local_atomic(path, data)
        else:
            fs.pipe_file(path, data)
            fs.invalidate_cache(path)
    return s


def write_text(url: str | os.PathLike[str], text: str, options: Mapping[str, Any] | None = None) -> str:
    return write_bytes(url, text.encode("utf-8"), options)


def _drop_cut_line(path: str) -> None:
    """Cut a last line that a killed writer left unfinished (local files: see :func:`append_bytes`)."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    f.truncate(pos - step + nl + 1)
                    return
                pos -= step
            f.truncate(0)
    except FileNotFoundError:
        return


def append_bytes(url: str | os.PathLike[str], data: bytes, options: Mapping[str, Any] | None = None) -> str:
    """Add ``data`` (whole lines) at the end of a file, creating it if needed.

    Local: an append and fsync; a line a killed writer left unfinished is cut first, so the new
    lines never join it. Object stores have no append: a new object replaces the old one in one
    step, made on the server (multipart copy, no download) once the old one is 5 MiB or more on
    S3, so the cost follows the new bytes, not the file's history; else downloaded and re-uploaded.
    """
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    with translated(s, "append to"):
        if isinstance(fs, LocalFileSystem):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            _drop_cut_line(path)
            with open(path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return s
        info = _info(fs, path, s)
        if info is None:
            fs.pipe_file(path, data)
        elif hasattr(fs, "merge") and int(info.get("size") or 0) >= _S3_MIN_PART:
            tail = f"{path}.append-{uuid.uuid4().hex}"
            fs.pipe_file(tail, data)
            try:
                fs.merge(path, [path, tail])
            finally:
                fs.rm_file(tail)
        else:
            old = bytes(fs.cat_file(path))
            if old and not old.endswith(b"\n"):
                old = old[: old.rfind(b"\n") + 1]
            fs.pipe_file(path, old + data)
        fs.invalidate_cache(path)
    return s


#: Largest segment of a log on an object store: an append costs at most this much copying.
LOG_SEGMENT_BYTES = 8 * 2**20


def _segments_dir(url: str) -> str:
    """``results.jsonl`` → ``results.d``: where a log's segments live on object stores."""
    head, _, name = url.rstrip("/").rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return join(head, f"{stem}.d") if head else f"{stem}.d"


def log_segments(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> list[str]:
    """The segment objects of a log (oldest first); none on a local disk."""
    s = os.fspath(url)
    if not is_url(s):
        return []
    folder = _segments_dir(s)
    return [join(folder, n) for n in listdir(folder, options) if n.endswith(".jsonl")]


def append_log(
    url: str | os.PathLike[str],
    data: bytes,
    options: Mapping[str, Any] | None = None,
    segment_bytes: int = LOG_SEGMENT_BYTES,
) -> str:
    """Add whole lines to a log whose cost must not grow with its length; returns what was written.

    Local: an append to ``url`` itself (:func:`append_bytes`). Object stores: every append there
    rewrites or server-copies the object, O(its size); so once ``url`` holds ``segment_bytes``,
    new lines go to segment objects beside it, ``<stem>.d/NNNNNNNN.jsonl``, each at most
    ``segment_bytes``: an append costs one listing and at most one segment's copy, whatever the
    log's history. A small log is the one file, as on a local disk. :func:`read_log` reads the
    file then its segments, in order.
    """
    s = os.fspath(url)
    if not is_url(s):
        return append_bytes(s, data, options)
    segments = log_segments(s, options)
    last = segments[-1] if segments else s  # the file itself is the first segment
    size = int((info(last, options) or {}).get("size") or 0)
    if size + len(data) <= segment_bytes:
        return append_bytes(last, data, options)
    number = int(last.rsplit("/", 1)[-1].split(".", 1)[0]) + 1 if segments else 1
    return write_bytes(join(_segments_dir(s), f"{number:08d}.jsonl"), data, options)


def log_exists(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> bool:
    """Whether a log (the file or any segment) is there."""
    return exists(url, options) or bool(log_segments(url, options))


def read_log(
    url: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The JSON objects of a log written by :func:`append_log` (the file, then its segments)."""
    s = os.fspath(url)
    yield from read_jsonl(s, options)
    for segment in log_segments(s, options):
        yield from read_jsonl(segment, options)


def write_log(
    url: str | os.PathLike[str],
    records: Iterable[Mapping[str, Any]],
    options: Mapping[str, Any] | None = None,
) -> str:
    """Replace a whole log with ``records`` (compaction): the file written, then its segments
    removed (a reader in between sees some records twice, which readers keeping the latest run
    per document tolerate)."""
    s = os.fspath(url)
    old = log_segments(s, options)
    write_jsonl(s, records, options)
    for segment in old:
        delete(segment, options)
    return s


def delete(url: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> None:
    """Remove a file; nothing happens if it is not there."""
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise _error(exc, s, "delete") from exc
    fs.invalidate_cache(path)


def read_jsonl(
    url: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON Lines file; nothing if the file is not there.

    A line that does not parse (cut by a crash) is skipped: its document is simply redone.
    A missing bucket or an unreachable endpoint raise :class:`StorageError`, never "empty".
    """
    s = os.fspath(url)
    fs, path = url_to_fs(s, options)
    if isinstance(fs, LocalFileSystem):
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below; a generator keeps it open)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _error(exc, s, "read") from exc
        with f:
            yield from _parse_lines(f)
        return
    if _info(fs, path, s) is None:
        return
    data = read_bytes(s, options)
    yield from _parse_lines(data.splitlines())


def _parse_lines(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            yield rec


def jsonl_bytes(records: Iterable[Mapping[str, Any]]) -> bytes:
    """JSON Lines as written everywhere in inkloop (UTF-8, one object per line, no ASCII escaping)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_jsonl(
    url: str | os.PathLike[str],
    records: Iterable[Mapping[str, Any]],
    options: Mapping[str, Any] | None = None,
) -> str:
    """Durably write a whole JSON Lines file (see :func:`write_bytes`)."""
    return write_bytes(url, jsonl_bytes(records), options)
