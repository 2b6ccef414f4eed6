"""The registry interface: the rules every backend shares, and the storage primitives each provides.

:class:`ModelRegistry` is an abstract base class. Its concrete methods are the rules — how a tag
resolves to a version, how aliases move and roll back (with their history), what a registration
checks — written once, so both backends behave alike (``tests/test_registry.py`` runs one suite
over both). Its abstract methods are what a backend stores and reads:
:class:`inkloop.models.registry.folders.Registry` (folders under an fsspec URL) and
:class:`inkloop.models.mlflow_registry.MlflowRegistry` (the MLflow Model Registry).
"""

from __future__ import annotations

import copy
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inkloop.models.references import ModelCard, ModelError, ModelRef
from inkloop.models.registry.refs import (
    AUTO_VERSION_RE,
    DEFAULT_ALIAS,
    MODEL_FILE,
    PT_FILE,
    SCHEME,
    check_alias_name,
    check_name,
    check_version_name,
)

logger = logging.getLogger(__name__)

_MAX_HISTORY = 100


@dataclass(frozen=True)
class AliasRecord:
    """The content of ``aliases/<alias>.json``: the current version and the ones before it."""

    version: str
    updated_at: str
    history: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "updated_at": self.updated_at, "history": list(self.history)}


def now() -> str:
    """The current UTC time as an ISO 8601 string to the second (alias records)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def files_of(card: ModelCard) -> dict[str, str]:
    """The ``{filename: sha256}`` a registered card vouches for."""
    files = card.extra.get("files")
    out: dict[str, str] = dict(files) if isinstance(files, Mapping) else {}
    if card.sha256:
        out.setdefault(MODEL_FILE, card.sha256)
    return out


def check_card_sha(card: ModelCard, name: str, actual: str) -> None:
    """Refuse a caller's card whose ``sha256`` names another ONNX file than the one registered
    (``actual``): the stored card must describe the stored bytes."""
    if card.sha256 and card.sha256 != actual:
        raise ModelError(
            f"the card given for {name} says sha256 {card.sha256[:12]}…, but the ONNX file is "
            f"{actual[:12]}…; refusing to register a card that describes another file"
        )


def registered_card(card: ModelCard, name: str, version: str, hashes: dict[str, str]) -> ModelCard:
    """The card stored with a new version: a copy of the caller's (which is not modified) with
    ``name``, ``version``, ``sha256`` (of the ONNX file), ``extra["files"]`` (``hashes``: every
    stored file's SHA-256) and ``extra["registered_at"]`` filled in, the same in every backend."""
    final = ModelCard.from_dict(copy.deepcopy(card.to_dict()))
    final.name, final.version, final.sha256 = name, version, hashes[MODEL_FILE]
    final.extra["files"] = dict(hashes)
    final.extra["registered_at"] = now()
    return final


class ModelRegistry(ABC):
    """A model registry: immutable versions, movable aliases, checksummed files (module docstring).

    Subclasses set ``url`` (how the registry is named in messages), ``is_local`` (files are used
    in place, not cached) and ``cache_dir``, and implement the abstract storage primitives.
    """

    url: str
    is_local: bool
    cache_dir: Path
    #: How a reference to a version of this registry is written (``registry://``, ``mlflow://``).
    ref_scheme: str = SCHEME

    # -- what a backend stores and reads -------------------------------------------------------

    @abstractmethod
    def _version_names(self, name: str) -> list[str]:
        """The complete versions of ``name``, oldest first; ``[]`` for an unknown model."""

    @abstractmethod
    def list_models(self) -> list[str]:
        """Names of the models having at least one complete version."""

    @abstractmethod
    def aliases(self, name: str) -> dict[str, str]:
        """``{alias: version}`` for one model."""

    @abstractmethod
    def alias_record(self, name: str, alias: str) -> AliasRecord | None:
        """An alias's current version, when it moved and the versions before; None if unset."""

    @abstractmethod
    def _store_alias(self, name: str, alias: str, record: AliasRecord) -> None:
        """Write an alias in one atomic step (readers see the old record or the new one)."""

    @abstractmethod
    def show(self, name: str, version_or_alias: str = DEFAULT_ALIAS) -> ModelCard:
        """The card of a version (files are not read; use :meth:`verify` or :meth:`fetch`)."""

    @abstractmethod
    def verify(self, name: str, version: str, files: list[str] | None = None) -> ModelCard:
        """Check the SHA-256 of every file of a version (or of ``files``); return its card.

        Raises :class:`ModelError` naming the file on a missing file or a checksum mismatch.
        """

    @abstractmethod
    def _card_of(self, name: str, version: str) -> ModelCard:
        """The card of a complete version (it names the files and their SHA-256)."""

    @abstractmethod
    def _fetch_files(
        self, name: str, version: str, card: ModelCard, wanted: list[str], label: str
    ) -> ModelRef:
        """Local, checksum-verified copies of ``wanted`` files of a version, as a :class:`ModelRef`."""

    @abstractmethod
    def _check_new_version(self, name: str, version: str) -> None:
        """Refuse a version name that exists (complete or not) or is an alias's name."""

    @abstractmethod
    def _register_sources(
        self, name: str, sources: dict[str, Path], card: ModelCard, version: str | None
    ) -> str:
        """Store the files (``{filename: local path}``) and the card as a new version; return it."""

    @abstractmethod
    def write_file(self, name: str, version: str, filename: str, data: bytes) -> str:
        """Store a small file beside a version (the gate's decision); return where it went."""

    @abstractmethod
    def read_file(self, name: str, version: str, filename: str) -> bytes | None:
        """A file written with :meth:`write_file`, or None."""

    @abstractmethod
    def purge_incomplete(self, dry_run: bool = False) -> list[str]:
        """Remove what interrupted operations left behind; return what was (or would be) removed."""

    # -- the rules, the same for every backend -------------------------------------------------

    def _unknown_model(self, name: str) -> ModelError:
        known = self.list_models()
        hint = f"known models: {', '.join(known)}" if known else "the registry has no models"
        return ModelError(f"registry {self.url}: unknown model {name!r} ({hint})")

    def _require_names(self, name: str) -> list[str]:
        check_name("model name", name)
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
        check_name("model name", name)
        check_name("version or alias", version_or_alias)
        versions = self._require_names(name)
        if version_or_alias in versions:
            return version_or_alias
        if AUTO_VERSION_RE.match(version_or_alias):
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
        check_alias_name(alias)
        check_name("version", version)
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
            name, alias, AliasRecord(version=version, updated_at=now(), history=history[-_MAX_HISTORY:])
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
        check_alias_name(alias)
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
            name, alias, AliasRecord(version=target, updated_at=now(), history=record.history[:-1])
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
        expected = files_of(card)
        wanted = [MODEL_FILE, PT_FILE] if with_pt else [MODEL_FILE]
        for fname in wanted:
            if fname not in expected:
                raise ModelError(f"registry {self.url}: {name}@{version} has no {fname}")
        return self._fetch_files(
            name, version, card, wanted, ref or f"{self.ref_scheme}{name}@{version_or_alias}"
        )

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
        check_name("model name", name)
        if version is not None:
            check_version_name(version)
        sources: dict[str, Path] = {MODEL_FILE: Path(onnx_path)}
        if pt_path is not None:
            sources[PT_FILE] = Path(pt_path)
        for src in sources.values():
            if not src.is_file():
                raise ModelError(f"cannot register {name}: {src} is not a file")
        if version is not None:
            self._check_new_version(name, version)
        return self._register_sources(name, sources, card, version)
