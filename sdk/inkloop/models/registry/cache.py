"""The local cache of models fetched from a remote fsspec registry.

Inference needs a local ONNX file. A model from a remote registry (``s3://…``) is copied to
``<cache_dir>/<hash of registry URL>/<name>/<version>-<sha256 prefix>/`` with its card beside it
(so the folder also works with :func:`inkloop.models.references.load_local`); a cached copy is
reused as long as its checksum still matches the card, and downloaded again when it does not.
Copies land under a temporary name and are renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

from fsspec import AbstractFileSystem

from inkloop.documents.hashing import copy_hashing, sha256_file
from inkloop.models.references import ModelCard, ModelError
from inkloop.models.registry.files import mismatch
from inkloop.models.registry.refs import CARD_FILE, TMP_PREFIX

logger = logging.getLogger(__name__)


class ModelCache:
    """Verified local copies of one remote registry's files, under ``cache_dir``."""

    def __init__(self, cache_dir: Path, registry_url: str) -> None:
        key = hashlib.sha256(registry_url.encode()).hexdigest()[:16]
        self.root = cache_dir / key

    def folder(self, name: str, version: str, model_sha256: str) -> Path:
        """Where a version's files are cached: a new folder whenever the model's bytes change."""
        return self.root / name / f"{version}-{model_sha256[:16]}"

    def copy(
        self,
        fs: AbstractFileSystem,
        remote: str,
        dest: Path,
        expected: str,
        display: Callable[[str], str] = str,
    ) -> None:
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
                with fs.open(remote, "rb") as src, open(tmp, "wb") as out:
                    actual = copy_hashing(src, out)
            except FileNotFoundError as exc:
                raise ModelError(f"{display(remote)}: missing from registered version") from exc
            if actual != expected:
                raise mismatch(display(remote), expected, actual)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def put_card(dest: Path, card: ModelCard) -> None:
        """Write the card beside the cached files (so the folder also works with ``load_local``)."""
        card.save(dest / CARD_FILE)
