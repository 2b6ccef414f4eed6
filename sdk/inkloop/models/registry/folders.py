"""The model registry on folders: immutable model versions, and movable aliases that point at them.

Layout under a storage URL (anything fsspec opens: a local path, ``file://``, ``memory://``,
``s3://`` …)::

    models/<name>/<version>/model.onnx      what inference runs
    models/<name>/<version>/model.pt        optional: the checkpoint a retrain starts from
    models/<name>/<version>/card.json       written last: its presence commits the version
    models/<name>/aliases/<alias>.json      {"version": "v3", "updated_at": …, "history": [...]}

Why this shape:

- A version is never overwritten, so ``name@v3`` means the same bytes forever, and every result
  labelled ``name@v3`` can be traced back to them. Promotion and rollback only move an alias.
- The card records the SHA-256 of every file of the version, and every read checks it: a
  truncated upload, a flipped bit or a hand-edited file is refused, never silently served.
- A crash at any point leaves the registry as it was before the operation started:

  * on a local filesystem a version is assembled in ``models/<name>/.tmp-<uuid>/`` and renamed into
    place in one ``rename(2)``; an alias is written to a temporary file and ``os.replace``-d over the
    old one. Files are fsync-ed before the rename so a power cut cannot commit empty files.
  * on object stores (no rename there) files are uploaded straight into the version folder and
    ``card.json`` goes last; a folder without a valid card is not a version (listing ignores it,
    auto-numbering skips it). An alias is one ``PUT``, which object stores apply atomically.

  Left-overs of a crash (temporary folders, card-less versions) are harmless and can be removed
  with :meth:`Registry.purge_incomplete`.

Limits: two processes registering the *same* model at the same moment on an object store can
race (fsspec has no portable conditional put); on a local filesystem the rename makes the loser
retry with the next version number. Two concurrent alias moves are last-writer-wins.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from inkloop.documents.hashing import copy_hashing, sha256_file, sha256_stream
from inkloop.models.references import ModelCard, ModelError, ModelRef
from inkloop.models.registry import files as durable  # looked up per call: tests interrupt them
from inkloop.models.registry.base import (
    AliasRecord,
    ModelRegistry,
    check_card_sha,
    files_of,
    registered_card,
)
from inkloop.models.registry.cache import ModelCache
from inkloop.models.registry.files import mismatch
from inkloop.models.registry.refs import (
    ALIASES_DIR,
    AUTO_VERSION_RE,
    CARD_FILE,
    DEFAULT_ALIAS,
    MODEL_FILE,
    NAME_RE,
    TMP_PREFIX,
    check_name,
    default_cache_dir,
    default_registry_url,
    parse_registry_ref,
    version_sort_key,
)
from inkloop.storage import fsync_dir as _fsync_dir
from inkloop.storage import url_to_fs
from inkloop.storage import write_local as _write_local

logger = logging.getLogger(__name__)

_MAX_COMMIT_ATTEMPTS = 100


def resolve_registry_ref(ref: str, registry_url: str | None = None) -> ModelRef:
    """Resolve ``registry://name@alias`` in the default registry (or ``registry_url``) to a local,
    checksum-verified ONNX file and its card. Used by :func:`inkloop.models.resolve.resolve_model`."""
    name, tag = parse_registry_ref(ref)
    return Registry(registry_url).fetch(name, tag, ref=ref)


class Registry(ModelRegistry):
    """A model registry rooted at an fsspec URL (see the module docstring for the layout)."""

    def __init__(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        raw = str(url) if url is not None else default_registry_url()
        if "://" not in raw:
            raw = str(Path(raw).expanduser())
        fs, root = url_to_fs(raw, storage_options)
        self.fs: AbstractFileSystem = fs
        self.root: str = root.rstrip("/")  # "" for a filesystem's root: paths become "/models/…"
        self.is_local: bool = isinstance(fs, LocalFileSystem)
        self.url: str = self.root if self.is_local else fs.unstrip_protocol(self.root)
        self.cache_dir: Path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def __repr__(self) -> str:
        return f"Registry({self.url!r})"

    # ------------------------------------------------------------------ paths

    def _models_dir(self) -> str:
        return f"{self.root}/models"

    def _model_dir(self, name: str) -> str:
        return f"{self.root}/models/{name}"

    def _version_dir(self, name: str, version: str) -> str:
        return f"{self.root}/models/{name}/{version}"

    def _aliases_dir(self, name: str) -> str:
        return f"{self.root}/models/{name}/{ALIASES_DIR}"

    def _alias_path(self, name: str, alias: str) -> str:
        return f"{self.root}/models/{name}/{ALIASES_DIR}/{alias}.json"

    def _display(self, path: str) -> str:
        """A path as a user can paste it: plain for local files, a full URL otherwise."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    # ---------------------------------------------------------------- listing

    def _ls(self, path: str) -> list[dict[str, Any]]:
        """Entries of a folder, ``[]`` if it does not exist; never a stale listing cache."""
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        return [e for e in entries if e["name"].rstrip("/") != path.rstrip("/")]

    def _subdirs(self, path: str) -> list[str]:
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in self._ls(path) if e.get("type") == "directory"
        )

    def _version_dirs(self, name: str) -> list[str]:
        """Every folder that is or could become a version (complete or not)."""
        return [d for d in self._subdirs(self._model_dir(name)) if not d.startswith(".") and d != ALIASES_DIR]

    def _parse_card(self, name: str, version: str, raw: bytes) -> ModelCard | None:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            card = ModelCard.from_dict(data)
        except (ValueError, TypeError, ModelError) as exc:
            logger.warning("ignoring %s@%s in %s: invalid card (%s)", name, version, self.url, exc)
            return None
        if card.version != version or not card.sha256:
            logger.warning("ignoring %s@%s in %s: card is not this version's", name, version, self.url)
            return None
        return card

    def _cards(self, name: str) -> dict[str, ModelCard]:
        """Valid versions of a model and their cards; folders without a valid card are skipped."""
        dirs = self._version_dirs(name)
        if not dirs:
            return {}
        paths = [f"{self._version_dir(name, d)}/{CARD_FILE}" for d in dirs]
        # One batched read: concurrent on async filesystems (s3, gcs), a loop elsewhere.
        results = self.fs.cat(paths, on_error="return")
        if not isinstance(results, dict):  # a single path comes back as bytes
            results = {paths[0]: results}
        cards: dict[str, ModelCard] = {}
        for path, raw in results.items():
            version = str(path).rstrip("/").split("/")[-2]
            if isinstance(raw, FileNotFoundError):
                continue
            if isinstance(raw, BaseException):
                raise ModelError(f"cannot read {self._display(str(path))}: {raw}") from raw
            card = self._parse_card(name, version, raw)
            if card is not None:
                cards[version] = card
        return dict(sorted(cards.items(), key=lambda kv: version_sort_key(kv[0])))

    def _card(self, name: str, version: str) -> ModelCard | None:
        path = f"{self._version_dir(name, version)}/{CARD_FILE}"
        self.fs.invalidate_cache(self._version_dir(name, version))
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return self._parse_card(name, version, raw)

    def list_models(self) -> list[str]:
        """Names of the models having at least one complete version."""
        return [n for n in self._subdirs(self._models_dir()) if NAME_RE.match(n) and self._cards(n)]

    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version}`` for one model."""
        self._require_model(name)
        out: dict[str, str] = {}
        for entry in self._ls(self._aliases_dir(name)):
            fname = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") != "file" or fname.startswith(".") or not fname.endswith(".json"):
                continue
            alias = fname.removesuffix(".json")
            if not NAME_RE.match(alias):
                continue
            record = self.alias_record(name, alias)
            if record is not None:
                out[alias] = record.version
        return dict(sorted(out.items()))

    def alias_record(self, name: str, alias: str) -> AliasRecord | None:
        """The alias file (current version, when it moved, versions before), or None if unset."""
        check_name("model name", name)
        check_name("alias", alias)
        path = self._alias_path(name, alias)
        self.fs.invalidate_cache(self._aliases_dir(name))
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
            history = data.get("history", [])
            if not isinstance(data.get("version"), str) or not isinstance(history, list):
                raise ValueError("missing version or malformed history")
            if not all(isinstance(v, str) for v in history):
                raise ValueError("missing version or malformed history")
            return AliasRecord(
                version=data["version"], updated_at=str(data.get("updated_at", "")), history=history
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ModelError(f"{self._display(path)}: invalid alias file ({exc})") from exc

    # -------------------------------------------------------------- resolving

    def _version_names(self, name: str) -> list[str]:
        return list(self._cards(name))

    def _card_of(self, name: str, version: str) -> ModelCard:
        return self._require_version(name, version)

    def _store_alias(self, name: str, alias: str, record: AliasRecord) -> None:
        self._write_alias(name, alias, record)

    def _register_sources(
        self, name: str, sources: dict[str, Path], card: ModelCard, version: str | None
    ) -> str:
        if self.is_local:
            return self._register_local(name, sources, card, version)
        return self._register_remote(name, sources, card, version)

    def _require_model(self, name: str) -> dict[str, ModelCard]:
        check_name("model name", name)
        cards = self._cards(name)
        if not cards:
            raise self._unknown_model(name)
        return cards

    def _require_version(self, name: str, version: str) -> ModelCard:
        check_name("version", version)
        card = self._card(name, version)
        if card is not None:
            return card
        cards = self._require_model(name)
        raise ModelError(
            f"registry {self.url}: model {name!r} has no version {version!r} (versions: {', '.join(cards)})"
        )

    def show(self, name: str, version_or_alias: str = DEFAULT_ALIAS) -> ModelCard:
        """The card of a version (files are not read; use :meth:`verify` or :meth:`fetch`)."""
        return self._require_version(name, self.resolve_version(name, version_or_alias))

    # -------------------------------------------------------------- verifying

    def verify(self, name: str, version: str, files: list[str] | None = None) -> ModelCard:
        """Check the SHA-256 of every file of a version (or of ``files``); return its card.

        Raises :class:`ModelError` naming the file on a missing file or a checksum mismatch.
        """
        card = self._require_version(name, version)
        expected = files_of(card)
        for fname in files if files is not None else list(expected):
            if fname not in expected:
                raise ModelError(f"{name}@{version} has no file {fname!r} (files: {', '.join(expected)})")
            path = f"{self._version_dir(name, version)}/{fname}"
            try:
                with self.fs.open(path, "rb") as f:
                    actual = sha256_stream(f)
            except FileNotFoundError as exc:
                raise ModelError(f"{self._display(path)}: missing from registered version") from exc
            if actual != expected[fname]:
                raise mismatch(self._display(path), expected[fname], actual)
        return card

    # ---------------------------------------------------------------- aliases

    def _write_alias(self, name: str, alias: str, record: AliasRecord) -> None:
        data = (json.dumps(record.to_dict(), indent=2) + "\n").encode()
        final = self._alias_path(name, alias)
        if self.is_local:
            adir = Path(self._aliases_dir(name))
            adir.mkdir(parents=True, exist_ok=True)
            tmp = adir / f"{TMP_PREFIX}{uuid.uuid4().hex}.json"
            try:
                _write_local(tmp, data)
                durable.replace_file(tmp, Path(final))
                _fsync_dir(adir)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            self.fs.makedirs(self._aliases_dir(name), exist_ok=True)  # no-op on object stores
            self.fs.pipe_file(final, data)  # one PUT: atomic on object stores
        self.fs.invalidate_cache(self._aliases_dir(name))

    # ------------------------------------------------------------ registering

    def _next_version(self, name: str) -> str:
        """``v<N+1>`` over every version folder, complete or not, so a crashed upload's left-overs
        on an object store are never reused (they might be half of someone else's files)."""
        numbers = [int(m.group(1)) for d in self._version_dirs(name) if (m := AUTO_VERSION_RE.match(d))]
        return f"v{max(numbers, default=0) + 1}"

    def _check_new_version(self, name: str, version: str) -> None:
        if self._card(name, version) is not None:
            raise ModelError(f"registry {self.url}: {name}@{version} already exists; versions are immutable")
        if self.fs.exists(self._version_dir(name, version)):
            raise ModelError(
                f"registry {self.url}: {self._display(self._version_dir(name, version))} exists without a "
                "valid card (left over from an interrupted registration?); remove it or run "
                "Registry.purge_incomplete()"
            )
        if self.alias_record(name, version) is not None:
            raise ModelError(
                f"registry {self.url}: {name} has an alias named {version!r}; pick another version"
            )

    @staticmethod
    def _final_card(card: ModelCard, name: str, version: str, hashes: dict[str, str]) -> bytes:
        check_card_sha(card, name, hashes[MODEL_FILE])
        return (json.dumps(registered_card(card, name, version, hashes).to_dict(), indent=2) + "\n").encode()

    def _register_local(
        self, name: str, sources: dict[str, Path], card: ModelCard, version: str | None
    ) -> str:
        model_dir = Path(self._model_dir(name))
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            hashes = {fname: durable.copy_local(src, tmp / fname) for fname, src in sources.items()}
            for _ in range(_MAX_COMMIT_ATTEMPTS):
                target = version or self._next_version(name)
                # The card goes last: inside the temp folder nothing is visible yet, but the same
                # "card = complete" rule then holds for a folder copied by hand or by a sync tool.
                _write_local(tmp / CARD_FILE, self._final_card(card, name, target, hashes))
                _fsync_dir(tmp)
                try:
                    durable.commit_dir(tmp, model_dir / target)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    if version is not None:
                        raise ModelError(
                            f"registry {self.url}: {name}@{version} already exists; versions are immutable"
                        ) from exc
                    continue  # someone else took this number meanwhile: take the next one
                _fsync_dir(model_dir)
                logger.info("%s: registered %s@%s", self.url, name, target)
                return target
            raise ModelError(f"registry {self.url}: could not find a free version number for {name}")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _register_remote(
        self, name: str, sources: dict[str, Path], card: ModelCard, version: str | None
    ) -> str:
        target = version or self._next_version(name)
        vdir = self._version_dir(name, target)
        if card.sha256:  # fail before uploading anything if the card describes another file
            check_card_sha(card, name, sha256_file(sources[MODEL_FILE]))
        self.fs.makedirs(vdir, exist_ok=True)  # no-op on object stores
        written: list[str] = []
        try:
            hashes: dict[str, str] = {}
            for fname, src in sources.items():
                dst = f"{vdir}/{fname}"
                with open(src, "rb") as s, self.fs.open(dst, "wb") as d:
                    written.append(dst)
                    hashes[fname] = copy_hashing(s, d)
            data = self._final_card(card, name, target, hashes)
            card_path = f"{vdir}/{CARD_FILE}"
            if self.fs.exists(card_path):  # narrows, but cannot close, a race between two writers
                raise ModelError(
                    f"registry {self.url}: {name}@{target} already exists; versions are immutable"
                )
            self.fs.pipe_file(card_path, data)  # the commit
        except BaseException:
            self._discard_upload(vdir, written)
            raise
        finally:
            self.fs.invalidate_cache(self._model_dir(name))
        logger.info("%s: registered %s@%s", self.url, name, target)
        return target

    def _discard_upload(self, vdir: str, written: list[str]) -> None:
        """Best effort: remove the files of a failed upload (a card-less folder is ignored anyway).

        Never raises, so the error that stopped the upload is the one the caller sees.
        """
        try:
            if self.fs.exists(f"{vdir}/{CARD_FILE}"):
                return  # committed after all (or by someone else): not ours to delete
            for path in written:
                self.fs.rm_file(path)
            self.fs.rmdir(vdir)  # a real folder only on hierarchical filesystems
        except Exception:
            logger.debug("could not clean up the failed upload in %s", self._display(vdir), exc_info=True)

    # --------------------------------------------------------------- fetching

    def _fetch_files(
        self, name: str, version: str, card: ModelCard, wanted: list[str], label: str
    ) -> ModelRef:
        """On a local registry the files are used in place; otherwise they are copied to the local
        cache (:class:`~inkloop.models.registry.cache.ModelCache`) and a cached copy is reused as long
        as its checksum still matches."""
        expected = files_of(card)
        if self.is_local:
            vdir = Path(self._version_dir(name, version))
            for fname in wanted:
                path = vdir / fname
                if not path.is_file():
                    raise ModelError(f"{path}: missing from registered version")
                actual = sha256_file(path)
                if actual != expected[fname]:
                    raise mismatch(str(path), expected[fname], actual)
            return ModelRef(path=vdir / MODEL_FILE, card=card, ref=label)
        cache = ModelCache(self.cache_dir, self.fs.unstrip_protocol(self.root))
        dest = cache.folder(name, version, expected[MODEL_FILE])
        for fname in wanted:
            remote = f"{self._version_dir(name, version)}/{fname}"
            cache.copy(self.fs, remote, dest / fname, expected[fname], self._display)
        cache.put_card(dest, card)
        return ModelRef(path=dest / MODEL_FILE, card=card, ref=label)

    # ------------------------------------------------------------ side files

    def write_file(self, name: str, version: str, filename: str, data: bytes) -> str:
        """Store a small file beside a version (the gate's decision); return where it went."""
        self._require_version(name, version)
        path = f"{self._version_dir(name, version)}/{filename}"
        self.fs.pipe_file(path, data)
        return self._display(path)

    def read_file(self, name: str, version: str, filename: str) -> bytes | None:
        """A file written with :meth:`write_file`, or None."""
        try:
            return bytes(self.fs.cat_file(f"{self._version_dir(name, version)}/{filename}"))
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------ maintenance

    def purge_incomplete(self, dry_run: bool = False) -> list[str]:
        """Remove what interrupted operations left behind; return what was (or would be) removed.

        That is ``.tmp-*`` folders and alias files, and version folders without a valid card.
        Do not run it while a registration is in progress: on an object store an upload in
        flight looks exactly like an abandoned one until its card lands.
        """
        removed: list[str] = []
        for name in self._subdirs(self._models_dir()):
            model_dir = self._model_dir(name)
            valid = self._cards(name) if NAME_RE.match(name) else {}
            for entry in self._ls(model_dir):
                base = entry["name"].rstrip("/").rsplit("/", 1)[-1]
                is_dir = entry.get("type") == "directory"
                if base.startswith(TMP_PREFIX) or (is_dir and base != ALIASES_DIR and base not in valid):
                    removed.append(entry["name"])
            for entry in self._ls(self._aliases_dir(name)):
                if entry["name"].rstrip("/").rsplit("/", 1)[-1].startswith(TMP_PREFIX):
                    removed.append(entry["name"])
        if not dry_run:
            for path in removed:
                self.fs.rm(path, recursive=True)
                logger.info("%s: removed left-over %s", self.url, self._display(path))
            self.fs.invalidate_cache(self._models_dir())
        return [self._display(p) for p in removed]
