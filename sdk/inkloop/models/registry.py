"""The model registry: immutable model versions, and movable aliases that point at them.

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

import copy
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from inkloop.documents.hashing import sha256_file, sha256_stream
from inkloop.models.references import ModelCard, ModelError, ModelRef
from inkloop.storage import fsync_dir as _fsync_dir
from inkloop.storage import url_to_fs
from inkloop.storage import write_local as _write_local

logger = logging.getLogger(__name__)

REGISTRY_ENV = "INKLOOP_REGISTRY"
"""Environment variable holding the default registry URL."""
CACHE_ENV = "INKLOOP_REGISTRY_CACHE"
"""Environment variable overriding where models from remote registries are cached."""

DEFAULT_ALIAS = "production"
MODEL_FILE = "model.onnx"
PT_FILE = "model.pt"
CARD_FILE = "card.json"
ALIASES_DIR = "aliases"
TMP_PREFIX = ".tmp-"
SCHEME = "registry://"

_MAX_HISTORY = 100
_MAX_COMMIT_ATTEMPTS = 100
_CHUNK = 1 << 20

# Names, versions and aliases become path components: keep them to a portable, unambiguous set.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_AUTO_VERSION_RE = re.compile(r"^v(\d+)$")


def default_registry_url() -> str:
    """``$INKLOOP_REGISTRY``, else ``$XDG_DATA_HOME/inkloop/registry`` (``~/.local/share/…``)."""
    env = os.environ.get(REGISTRY_ENV, "").strip()
    if env:
        return env
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "inkloop" / "registry")


def default_cache_dir() -> Path:
    """``$INKLOOP_REGISTRY_CACHE``, else ``$XDG_CACHE_HOME/inkloop/registry`` (``~/.cache/…``)."""
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "inkloop" / "registry"


def parse_registry_ref(ref: str) -> tuple[str, str]:
    """``registry://name@alias`` / ``registry://name@v7`` / ``registry://name`` → (name, tag).

    Without ``@`` the tag is ``production``: a bare name means "what is serving now".
    """
    bad = ModelError(
        f"bad registry reference {ref!r}; expected registry://name, registry://name@alias "
        "or registry://name@v7 (names use letters, digits, '.', '_' and '-')"
    )
    if not ref.startswith(SCHEME):
        raise bad
    name, sep, tag = ref.removeprefix(SCHEME).partition("@")
    if not sep:
        tag = DEFAULT_ALIAS
    if not _NAME_RE.match(name) or not _NAME_RE.match(tag):
        raise bad
    return name, tag


def resolve_registry_ref(ref: str, registry_url: str | None = None) -> ModelRef:
    """Resolve ``registry://name@alias`` in the default registry (or ``registry_url``) to a local,
    checksum-verified ONNX file and its card. Used by :func:`inkloop.models.resolve.resolve_model`."""
    name, tag = parse_registry_ref(ref)
    return Registry(registry_url).fetch(name, tag, ref=ref)


@dataclass(frozen=True)
class AliasRecord:
    """The content of ``aliases/<alias>.json``: the current version and the ones before it."""

    version: str
    updated_at: str
    history: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "updated_at": self.updated_at, "history": list(self.history)}


def _check_name(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ModelError(
            f"invalid {kind} {value!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _check_version_name(version: str) -> None:
    _check_name("version", version)
    if version == ALIASES_DIR:
        raise ModelError(f"invalid version {version!r}: reserved for the alias folder")


def _check_alias_name(alias: str) -> None:
    _check_name("alias", alias)
    if _AUTO_VERSION_RE.match(alias):
        # `@v3` must always mean version v3; an alias of that shape would make refs ambiguous.
        raise ModelError(f"invalid alias {alias!r}: names like v<N> are reserved for versions")


def _version_sort_key(version: str) -> tuple[int, int, str]:
    m = _AUTO_VERSION_RE.match(version)
    return (0, int(m.group(1)), version) if m else (1, 0, version)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> str:
    """Copy a stream and return the SHA-256 of exactly the bytes written.

    Hashing while copying (rather than before) means the recorded checksum describes the stored
    copy even if the source file changes underneath us.
    """
    h = hashlib.sha256()
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        h.update(chunk)
        dst.write(chunk)
    return h.hexdigest()


def _copy_local(src: Path, dst: Path) -> str:
    """Copy a local file durably (fsync before anyone renames it into view); return its SHA-256."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        digest = _copy_hashing(s, d)
        d.flush()
        os.fsync(d.fileno())
    return digest


def _commit_dir(tmp: Path, final: Path) -> None:
    """Publish a fully written version folder in one step.

    ``os.rename`` of a directory fails if the target exists and is not empty, which is exactly
    "never overwrite a version" and lets concurrent registrations detect each other.
    A module-level function so tests can interrupt a registration right before its commit.
    """
    os.rename(tmp, final)


def _replace_file(tmp: Path, final: Path) -> None:
    """Atomically swap in a new alias file (readers see the old or the new, never a mix).

    A module-level function so tests can interrupt a promotion between the write and the swap.
    """
    os.replace(tmp, final)


def _mismatch(where: str, expected: str, actual: str) -> ModelError:
    return ModelError(
        f"{where}: checksum mismatch (card says sha256 {expected[:12]}…, file is {actual[:12]}…); "
        "the file is corrupt or not the one this version registered"
    )


def _files_of(card: ModelCard) -> dict[str, str]:
    """The ``{filename: sha256}`` a registered card vouches for."""
    files = card.extra.get("files")
    out: dict[str, str] = dict(files) if isinstance(files, Mapping) else {}
    if card.sha256:
        out.setdefault(MODEL_FILE, card.sha256)
    return out


class RegistryRules:
    """What every registry implementation shares: how tags resolve, how aliases move and roll back,
    what a registration checks. Implementations provide the storage primitives
    (``_version_names``, ``alias_record``, ``_store_alias``, ``verify``, ``_check_new_version``,
    ``_register_sources``, ``list_models``, ``aliases``): :class:`Registry` (fsspec folders) and
    :class:`inkloop.models.mlflow_registry.MlflowRegistry` (the MLflow Model Registry)."""

    url: str
    #: How a reference to a version of this registry is written (``registry://``, ``mlflow://``).
    ref_scheme: str = SCHEME

    def _version_names(self, name: str) -> list[str]:
        raise NotImplementedError

    def list_models(self) -> list[str]:
        raise NotImplementedError

    def aliases(self, name: str) -> dict[str, str]:
        raise NotImplementedError

    def alias_record(self, name: str, alias: str) -> AliasRecord | None:
        raise NotImplementedError

    def _store_alias(self, name: str, alias: str, record: AliasRecord) -> None:
        raise NotImplementedError

    def verify(self, name: str, version: str, files: list[str] | None = None) -> ModelCard:
        raise NotImplementedError

    def _check_new_version(self, name: str, version: str) -> None:
        raise NotImplementedError

    def _register_sources(
        self, name: str, sources: dict[str, Path], card: ModelCard, version: str | None
    ) -> str:
        raise NotImplementedError

    def _unknown_model(self, name: str) -> ModelError:
        known = self.list_models()
        hint = f"known models: {', '.join(known)}" if known else "the registry has no models"
        return ModelError(f"registry {self.url}: unknown model {name!r} ({hint})")

    def _require_names(self, name: str) -> list[str]:
        _check_name("model name", name)
        versions = self._version_names(name)
        if not versions:
            raise self._unknown_model(name)
        return versions

    def list_versions(self, name: str) -> list[str]:
        """Complete versions of a model, oldest first (v2 before v10)."""
        return self._require_names(name)

    def alias(self, name: str, alias: str) -> str | None:
        """The version an alias points at, or None if the model has no such alias."""
        self._require_names(name)
        record = self.alias_record(name, alias)
        return record.version if record else None

    def resolve_version(self, name: str, version_or_alias: str = DEFAULT_ALIAS) -> str:
        """The version a tag means: a version name is itself, anything else is looked up as an alias."""
        _check_name("model name", name)
        _check_name("version or alias", version_or_alias)
        versions = self._require_names(name)
        if version_or_alias in versions:
            return version_or_alias
        if _AUTO_VERSION_RE.match(version_or_alias):
            raise ModelError(
                f"registry {self.url}: model {name!r} has no version {version_or_alias!r} "
                f"(versions: {', '.join(versions)})"
            )
        record = self.alias_record(name, version_or_alias)
        if record is None:
            listed = ", ".join(f"{a}→{v}" for a, v in self.aliases(name).items()) or "none"
            raise ModelError(
                f"registry {self.url}: model {name!r} has no alias or version {version_or_alias!r} "
                f"(aliases: {listed}; versions: {', '.join(versions)})"
            )
        if record.version not in versions:
            raise ModelError(
                f"registry {self.url}: alias {name}@{version_or_alias} points to {record.version!r}, "
                "which is not a complete version"
            )
        return record.version

    def set_alias(self, name: str, alias: str, version: str, *, verify: bool = True) -> str | None:
        """Point ``alias`` at ``version``; return the version it pointed at before (or None).

        The target must be a complete version whose files pass their checksums (unless
        ``verify=False``): an alias is what production loads, so it must never point at a
        model that would fail to load. The previous version is pushed on the alias history,
        which is what :meth:`rollback` walks back.
        """
        _check_alias_name(alias)
        _check_name("version", version)
        versions = self._require_names(name)
        if version not in versions:
            raise ModelError(
                f"registry {self.url}: model {name!r} has no version {version!r} "
                f"(versions: {', '.join(versions)})"
            )
        if alias in versions:
            raise ModelError(f"invalid alias {alias!r}: {name} has a version of that name")
        if verify:
            self.verify(name, version)
        record = self.alias_record(name, alias)
        previous = record.version if record else None
        if previous == version:
            return previous
        history = [*record.history, previous] if record and previous else []
        self._store_alias(
            name, alias, AliasRecord(version=version, updated_at=_now(), history=history[-_MAX_HISTORY:])
        )
        logger.info("%s: %s@%s → %s (was %s)", self.url, name, alias, version, previous)
        return previous

    def promote(self, name: str, version: str, alias: str = DEFAULT_ALIAS) -> str | None:
        """Make ``version`` the one ``alias`` (default ``production``) serves; return the previous one.

        Only the alias moves; the version's files are checksum-verified first and never touched.
        """
        return self.set_alias(name, alias, version, verify=True)

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> str:
        """Move ``alias`` back to the version it pointed at before; return that version.

        The version rolled back from is dropped from the history (rolling back twice goes two
        steps back, not back and forth). The target is checksum-verified like a promotion.
        """
        _check_alias_name(alias)
        self._require_names(name)
        record = self.alias_record(name, alias)
        if record is None:
            raise ModelError(f"registry {self.url}: model {name!r} has no alias {alias!r} to roll back")
        if not record.history:
            raise ModelError(
                f"registry {self.url}: {name}@{alias} has no previous version to roll back to "
                f"(it points to {record.version})"
            )
        target = record.history[-1]
        self.verify(name, target)
        self._store_alias(
            name, alias, AliasRecord(version=target, updated_at=_now(), history=record.history[:-1])
        )
        logger.info("%s: %s@%s rolled back %s → %s", self.url, name, alias, record.version, target)
        return target

    def fetch(
        self,
        name: str,
        version_or_alias: str = DEFAULT_ALIAS,
        *,
        with_pt: bool = False,
        ref: str | None = None,
    ) -> ModelRef:
        """A local, checksum-verified copy of a version's ONNX file (and ``model.pt`` if asked).

        With ``with_pt`` the checkpoint is ``ref.path.with_name("model.pt")``.
        """
        version = self.resolve_version(name, version_or_alias)
        card = self._card_of(name, version)
        expected = _files_of(card)
        wanted = [MODEL_FILE, PT_FILE] if with_pt else [MODEL_FILE]
        for fname in wanted:
            if fname not in expected:
                raise ModelError(f"registry {self.url}: {name}@{version} has no {fname}")
        return self._fetch_files(
            name, version, card, wanted, ref or f"{self.ref_scheme}{name}@{version_or_alias}"
        )

    def _card_of(self, name: str, version: str) -> ModelCard:
        raise NotImplementedError

    def _fetch_files(
        self, name: str, version: str, card: ModelCard, wanted: list[str], label: str
    ) -> ModelRef:
        raise NotImplementedError

    def register(
        self,
        name: str,
        onnx_path: str | os.PathLike[str],
        card: ModelCard,
        pt_path: str | os.PathLike[str] | None = None,
        version: str | None = None,
    ) -> str:
        """Store a new version of ``name``; return its version (``v1``, ``v2``, … unless given).

        The stored card is a copy of ``card`` with ``name``, ``version``, ``sha256`` (of the ONNX
        file) and ``extra["files"]`` (``{filename: sha256}`` of every stored file) filled in; the
        caller's card is not modified. A card that already carries a different ``sha256`` is
        refused. An existing version is never overwritten.
        """
        _check_name("model name", name)
        if version is not None:
            _check_version_name(version)
        sources: dict[str, Path] = {MODEL_FILE: Path(onnx_path)}
        if pt_path is not None:
            sources[PT_FILE] = Path(pt_path)
        for src in sources.values():
            if not src.is_file():
                raise ModelError(f"cannot register {name}: {src} is not a file")
        if version is not None:
            self._check_new_version(name, version)
        return self._register_sources(name, sources, card, version)


class Registry(RegistryRules):
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
        return dict(sorted(cards.items(), key=lambda kv: _version_sort_key(kv[0])))

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
        return [n for n in self._subdirs(self._models_dir()) if _NAME_RE.match(n) and self._cards(n)]

    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version}`` for one model."""
        self._require_model(name)
        out: dict[str, str] = {}
        for entry in self._ls(self._aliases_dir(name)):
            fname = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") != "file" or fname.startswith(".") or not fname.endswith(".json"):
                continue
            alias = fname.removesuffix(".json")
            if not _NAME_RE.match(alias):
                continue
            record = self.alias_record(name, alias)
            if record is not None:
                out[alias] = record.version
        return dict(sorted(out.items()))

    def alias_record(self, name: str, alias: str) -> AliasRecord | None:
        """The alias file (current version, when it moved, versions before), or None if unset."""
        _check_name("model name", name)
        _check_name("alias", alias)
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
        _check_name("model name", name)
        cards = self._cards(name)
        if not cards:
            raise self._unknown_model(name)
        return cards

    def _require_version(self, name: str, version: str) -> ModelCard:
        _check_name("version", version)
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
        expected = _files_of(card)
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
                raise _mismatch(self._display(path), expected[fname], actual)
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
                _replace_file(tmp, Path(final))
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
        numbers = [int(m.group(1)) for d in self._version_dirs(name) if (m := _AUTO_VERSION_RE.match(d))]
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
    def _check_card_sha(card: ModelCard, name: str, actual: str) -> None:
        if card.sha256 and card.sha256 != actual:
            raise ModelError(
                f"the card given for {name} says sha256 {card.sha256[:12]}…, but the ONNX file is "
                f"{actual[:12]}…; refusing to register a card that describes another file"
            )

    @classmethod
    def _final_card(cls, card: ModelCard, name: str, version: str, hashes: dict[str, str]) -> bytes:
        cls._check_card_sha(card, name, hashes[MODEL_FILE])
        final = ModelCard.from_dict(copy.deepcopy(card.to_dict()))
        final.name = name
        final.version = version
        final.sha256 = hashes[MODEL_FILE]
        final.extra["files"] = dict(hashes)
        final.extra["registered_at"] = _now()
        return (json.dumps(final.to_dict(), indent=2) + "\n").encode()

    def _register_local(
        self, name: str, sources: dict[str, Path], card: ModelCard, version: str | None
    ) -> str:
        model_dir = Path(self._model_dir(name))
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            hashes = {fname: _copy_local(src, tmp / fname) for fname, src in sources.items()}
            for _ in range(_MAX_COMMIT_ATTEMPTS):
                target = version or self._next_version(name)
                # The card goes last: inside the temp folder nothing is visible yet, but the same
                # "card = complete" rule then holds for a folder copied by hand or by a sync tool.
                _write_local(tmp / CARD_FILE, self._final_card(card, name, target, hashes))
                _fsync_dir(tmp)
                try:
                    _commit_dir(tmp, model_dir / target)
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
            self._check_card_sha(card, name, sha256_file(sources[MODEL_FILE]))
        self.fs.makedirs(vdir, exist_ok=True)  # no-op on object stores
        written: list[str] = []
        try:
            hashes: dict[str, str] = {}
            for fname, src in sources.items():
                dst = f"{vdir}/{fname}"
                with open(src, "rb") as s, self.fs.open(dst, "wb") as d:
                    written.append(dst)
                    hashes[fname] = _copy_hashing(s, d)
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

    def _cache_root(self) -> Path:
        key = hashlib.sha256(self.fs.unstrip_protocol(self.root).encode()).hexdigest()[:16]
        return self.cache_dir / key

    def _cached_copy(self, remote: str, dest: Path, expected: str) -> None:
        """Make ``dest`` a verified copy of ``remote``, reusing it if its checksum already matches."""
        if dest.is_file():
            actual = sha256_file(dest)
            if actual == expected:
                return
            logger.warning("cached %s is corrupt (sha256 %s…); downloading it again", dest, actual[:12])
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{dest.name}")
        try:
            try:
                with self.fs.open(remote, "rb") as src, open(tmp, "wb") as out:
                    actual = _copy_hashing(src, out)
            except FileNotFoundError as exc:
                raise ModelError(f"{self._display(remote)}: missing from registered version") from exc
            if actual != expected:
                raise _mismatch(self._display(remote), expected, actual)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def _fetch_files(
        self, name: str, version: str, card: ModelCard, wanted: list[str], label: str
    ) -> ModelRef:
        """On a local registry the files are used in place; otherwise they are copied to
        ``<cache_dir>/<hash of registry URL>/<name>/<version>-<sha256 prefix>/`` with the card beside
        them, and a cached copy is reused as long as its checksum still matches."""
        expected = _files_of(card)
        if self.is_local:
            vdir = Path(self._version_dir(name, version))
            for fname in wanted:
                path = vdir / fname
                if not path.is_file():
                    raise ModelError(f"{path}: missing from registered version")
                actual = sha256_file(path)
                if actual != expected[fname]:
                    raise _mismatch(str(path), expected[fname], actual)
            return ModelRef(path=vdir / MODEL_FILE, card=card, ref=label)
        dest = self._cache_root() / name / f"{version}-{expected[MODEL_FILE][:16]}"
        for fname in wanted:
            self._cached_copy(f"{self._version_dir(name, version)}/{fname}", dest / fname, expected[fname])
        card_path = dest / CARD_FILE
        card_tmp = dest / f"{TMP_PREFIX}{uuid.uuid4().hex}-{CARD_FILE}"
        try:
            card_tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
            os.replace(card_tmp, card_path)  # so the cached folder also works with load_local
        finally:
            card_tmp.unlink(missing_ok=True)
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
            valid = self._cards(name) if _NAME_RE.match(name) else {}
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
