"""Pages reach Label Studio through an S3 source storage instead of one upload request per page.

Why: Label Studio's own docs recommend cloud storage for anything beyond a demo. An upload copies
every page image into Label Studio's media folder, one multipart request per page, and that
folder then has to be backed up and shared by every Label Studio replica. With a source storage
the images stay in the bucket the loop already writes to; Label Studio keeps only the task and
hands the browser a short-lived presigned link to the object.

:class:`S3PageStorage` is a :class:`~inkloop.review.delivery.PageDelivery` (what ``inkloop review
push --pages-via storage`` passes to the push):

- a page image already in the bucket is referred to where it is (``s3://bucket/…``: render the
  review images into the bucket folder and nothing is copied); any other image (a local file,
  another bucket) is put under ``<folder>/pages/`` once, named by its content;
- the project gets an S3 *import* storage on the bucket, created once or reused when one with the
  same bucket and prefix exists (:func:`ensure_s3_storage`): the custom endpoint
  (``s3_endpoint``), the credentials, ``presign: true`` (the browser is sent to a presigned URL;
  Label Studio never proxies the bytes), ``use_blob_urls: false`` and a file filter no key
  matches (``^$``), then synced once (:func:`sync_storage`: Label Studio lists the prefix with
  those credentials and records the storage as synced). The storage is there to resolve and
  presign; it imports nothing itself, so pressing *Sync* in the UI never adds tasks without
  predictions;
- the tasks (``image`` = the page's ``s3://`` URL, the pushed prediction with ``model_version``
  and scores) are created by the push's own import, 50 per request, idempotent by ``page_key``.

Label Studio resolves a task's ``s3://`` URL through any S3 import storage of the project on the
same bucket: the labeling view asks ``/tasks/<id>/resolve/?fileuri=…`` and is redirected (303)
to a presigned GET on the endpoint. That endpoint must therefore be reachable **from the
annotators' browsers** as well as from Label Studio, under the name Label Studio is given
(:attr:`S3Source.endpoint`; ``INKLOOP_LS_S3_ENDPOINT`` when it differs from the pusher's own).
Label Studio's SSRF protection refuses an endpoint on a private or loopback address (a MinIO on
the LAN, moto on 127.0.0.1) unless the server runs with ``SSRF_PROTECTION_ENABLED=false``. And
the editor fetches the page with ``XMLHttpRequest`` from Label Studio's page: the bucket must
allow ``GET`` from Label Studio's origin (CORS).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inkloop import storage
from inkloop.retry import wait_until
from inkloop.review.auth import ReviewServiceError
from inkloop.review.client import as_dict
from inkloop.review.delivery import require_files

if TYPE_CHECKING:
    from inkloop.review.client import LabelStudioClient

#: Label Studio's storage states that end a sync.
_DONE = frozenset({"completed", "completed_with_errors", "failed"})
#: The environment variable naming the endpoint as Label Studio (and the browsers) reach it.
LS_ENDPOINT_ENV = "INKLOOP_LS_S3_ENDPOINT"
STORAGE_TITLE = "inkloop pages"
#: The storage's file filter: no key matches it, so a sync (ours, or *Sync* in the UI) imports
#: nothing; tasks come from the push, with their predictions.
NO_IMPORT = "^$"
#: How Label Studio's SSRF protection words a refused endpoint (1.23: a 403).
_SSRF_REFUSALS = ("reserved network address", "private network addresses", "URL was not allowed")
#: What Label Studio says instead of the reason when the endpoint is not a trusted domain.
_HIDDEN = "Debugging info is not available"


@dataclass(frozen=True)
class S3Source:
    """The bucket folder that holds the page images, and how Label Studio reaches it.

    ``url`` is the folder (``s3://bucket/results/review-images``: where the push renders the
    page images, so they are not copied); it is also the storage's prefix. ``options``: the
    storage options the pusher writes with (explicit, else fsspec's and the environment's). The
    endpoint and keys Label Studio is given default to the pusher's own; ``endpoint`` overrides
    the endpoint when Label Studio and the browsers reach the bucket under another name. Without
    keys, Label Studio uses its own environment or instance role."""

    url: str
    options: Mapping[str, Any] | None = None
    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    region: str | None = None
    presign: bool = True
    presign_ttl_minutes: int = 15
    title: str = STORAGE_TITLE

    def __post_init__(self) -> None:
        if not self.url.startswith("s3://"):
            raise ValueError(f"pages through storage need an s3:// folder, got {self.url!r}")
        if not self.bucket:
            raise ValueError(f"{self.url!r} names no bucket")

    @classmethod
    def from_url(
        cls, url: str, options: Mapping[str, Any] | None = None, *, endpoint: str | None = None, **kw: Any
    ) -> S3Source:
        """A source for ``url`` with Label Studio's connection taken from the storage layer's
        options (explicit ``options``, else fsspec's configuration and the AWS environment) and
        ``endpoint`` / ``INKLOOP_LS_S3_ENDPOINT`` for the endpoint as Label Studio reaches it."""
        opts = storage.storage_options(url, options)
        client_kwargs = opts.get("client_kwargs") or {}
        return cls(
            url=url.rstrip("/"),
            options=options,
            endpoint=endpoint
            or os.environ.get(LS_ENDPOINT_ENV)
            or opts.get("endpoint_url")
            or client_kwargs.get("endpoint_url"),
            access_key=opts.get("key"),
            secret_key=opts.get("secret"),
            session_token=opts.get("token"),
            region=client_kwargs.get("region_name")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION"),
            **kw,
        )

    @property
    def bucket(self) -> str:
        return self.url.split("://", 1)[1].split("/", 1)[0]

    @property
    def key_prefix(self) -> str:
        """The folder's key inside the bucket ('' for the bucket's root)."""
        rest = self.url.split("://", 1)[1]
        return rest.split("/", 1)[1].strip("/") if "/" in rest else ""

    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.key_prefix, *parts) if p.strip("/"))

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def holds(self, image: str) -> bool:
        """True for an object under this folder (referred to where it is, not copied)."""
        return image.startswith(self.url + "/")


def find_s3_storage(client: LabelStudioClient, bucket: str, prefix: str) -> dict[str, Any] | None:
    """The project's S3 import storage on ``bucket`` + ``prefix``, or None."""
    pid = client.project_id
    found = client.call("list S3 storages", lambda: client.client.import_storage.s3.list(project=pid))
    for st in map(as_dict, found or []):
        if st.get("bucket") == bucket and (st.get("prefix") or "").strip("/") == prefix.strip("/"):
            return st
    return None


def ensure_s3_storage(client: LabelStudioClient, source: S3Source, prefix: str) -> dict[str, Any]:
    """Create the project's S3 import storage on ``source``'s bucket + ``prefix``, or reuse the
    one that exists (idempotent by bucket and prefix; its endpoint and presign settings are
    brought up to date). Label Studio checks the connection (and that the prefix holds an
    object) before it saves: a wrong endpoint, key or bucket is refused here, in its words."""
    settings: dict[str, Any] = {
        "bucket": source.bucket,
        "prefix": prefix,
        "regex_filter": NO_IMPORT,
        "use_blob_urls": False,
        "presign": source.presign,
        "presign_ttl": source.presign_ttl_minutes,
        "recursive_scan": False,
        "title": source.title,
    }
    secrets = {
        k: v
        for k, v in (
            ("aws_access_key_id", source.access_key),
            ("aws_secret_access_key", source.secret_key),
            ("aws_session_token", source.session_token),
            ("region_name", source.region),
            ("s3endpoint", source.endpoint),
        )
        if v
    }
    s3 = client.client.import_storage.s3
    existing = find_s3_storage(client, source.bucket, prefix)
    where = f"s3://{source.bucket}/{prefix} (endpoint {source.endpoint or 'the default'})"
    try:
        if existing is None:
            created = client.call(
                f"create the S3 storage on {where}",
                lambda: s3.create(project=client.project_id, **settings, **secrets),
            )
            return as_dict(created)
        wanted = {**settings, "s3endpoint": source.endpoint}  # the SDK's field name
        if any(existing.get(k) != v for k, v in wanted.items() if k != "title" and v is not None):
            updated = client.call(
                f"update the S3 storage on {where}",
                lambda: s3.update(id=int(existing["id"]), **settings, **secrets),
            )
            return as_dict(updated)
    except ReviewServiceError as exc:
        if any(t in str(exc) for t in _SSRF_REFUSALS):
            raise ReviewServiceError(
                f"{exc}. Label Studio's SSRF protection refuses an endpoint on a loopback or private "
                "address: give one it may reach (INKLOOP_LS_S3_ENDPOINT), or run Label Studio with "
                "SSRF_PROTECTION_ENABLED=false on a trusted network"
            ) from None
        if _HIDDEN in str(exc):
            raise ReviewServiceError(
                f"{exc}. Label Studio hides the reason for an endpoint outside its "
                f"S3_TRUSTED_STORAGE_DOMAINS (its log has it); {_seen_from_here(source)}"
            ) from None
        raise
    return existing


def _seen_from_here(source: S3Source) -> str:
    """What this machine finds at the endpoint Label Studio was given, with the same keys: the
    reason Label Studio would not say (a missing bucket, refused keys), or that the fault is on
    Label Studio's side of the network."""
    opts = dict(storage.storage_options(source.url, source.options))
    if source.endpoint:
        opts["endpoint_url"] = source.endpoint
    opts["config_kwargs"] = {"connect_timeout": 3, "retries": {"max_attempts": 1}}
    where = f"{source.url} at {source.endpoint or 'the default endpoint'}"
    try:
        found = storage.info(source.url, opts)
    except storage.StorageError as exc:
        return f"checked from here, {where}: {exc.reason}"
    if found is None:
        return f"checked from here, {where} holds nothing (Label Studio needs an object under it)"
    return f"from here {where} is readable: check that Label Studio reaches that endpoint"


def sync_storage(client: LabelStudioClient, storage_id: int, timeout: float = 600.0) -> dict[str, Any]:
    """Sync an S3 import storage and wait until Label Studio finished (a server with Redis
    queues the sync; without, the request returns when it is done). A failed sync is an error
    carrying Label Studio's reason."""
    s3 = client.client.import_storage.s3
    state = as_dict(client.call(f"sync S3 storage {storage_id}", lambda: s3.sync(id=storage_id)))

    def finished() -> bool:
        nonlocal state
        if state.get("status") in _DONE:
            return True
        state = as_dict(client.call(f"read S3 storage {storage_id}", lambda: s3.get(id=storage_id)))
        return state.get("status") in _DONE

    if not wait_until(finished, timeout, interval=1.0):
        raise ReviewServiceError(
            f"Label Studio at {client.url}: the sync of S3 storage {storage_id} did not finish in "
            f"{timeout:.0f} s (status {state.get('status')!r}; is its job queue running?)"
        )
    if state.get("status") == "failed":
        trace = (state.get("traceback") or "").strip().splitlines()
        reason = trace[-1] if trace else "no reason given"
        raise ReviewServiceError(
            f"Label Studio at {client.url}: the sync of S3 storage {storage_id} "
            f"(s3://{state.get('bucket')}/{state.get('prefix')}) failed: {reason}"
        )
    return state


class S3PageStorage:
    """Deliver page images through the project's S3 source storage (a
    :class:`~inkloop.review.delivery.PageDelivery`).

    The storage is ensured once per project, after the first page is in the bucket (Label
    Studio checks that its prefix holds an object before it saves one)."""

    def __init__(self, source: S3Source) -> None:
        self.source = source
        self.storages: dict[int, dict[str, Any]] = {}  # project id → its storage record
        self.copied = 0  # images put in the bucket by this delivery (not already there)

    def __repr__(self) -> str:
        return f"S3PageStorage({self.source.url!r}, endpoint={self.source.endpoint!r})"

    def check(self, images: Sequence[str]) -> None:
        """Every image exists (in the bucket or elsewhere); runs before the push creates anything."""
        require_files(images)

    def reference(self, client: LabelStudioClient, image: str) -> str:
        """The page's ``s3://`` URL in the bucket (copied there first when it is elsewhere)."""
        if self.source.holds(image):
            url = image
        else:
            data = storage.read_bytes(image)
            name = f"{hashlib.sha256(data).hexdigest()[:16]}-{storage.file_name(image)}"
            url = self.source.object_url(self.source._key("pages", name))
            if storage.info(url, self.source.options) is None:
                storage.write_bytes(url, data, self.source.options)
                self.copied += 1
        pid = client.project_id
        if pid not in self.storages:
            record = ensure_s3_storage(client, self.source, self.source.key_prefix)
            self.storages[pid] = sync_storage(client, int(record["id"]))
        return url


def storage_delivery(
    results_dir: str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    endpoint: str | None = None,
) -> tuple[S3PageStorage, str]:
    """The delivery for ``push --pages-via storage`` and the folder to render the pages into:
    ``images_dir``, else ``RESULTS/review-images``. It must be in a bucket (``s3://``): the pages
    are rendered straight into it and Label Studio's storage is made on it, so nothing is copied."""
    folder = os.fspath(images_dir) if images_dir else storage.join(results_dir, "review-images")
    if not folder.startswith("s3://"):
        raise ValueError(
            f"pages through storage go to a bucket, and {folder} is not one: give --images-dir "
            "s3://BUCKET/FOLDER (or push a results folder that is in a bucket)"
        )
    return S3PageStorage(S3Source.from_url(folder, options, endpoint=endpoint)), folder
