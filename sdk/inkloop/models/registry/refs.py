"""Registry names and references: what ``registry://name@alias`` means, which names are valid,
where the default registry and its cache are.

Names, versions and aliases become path components (and MLflow tags), so they are kept to a
portable, unambiguous set; ``v<N>`` always names a version, never an alias.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from inkloop.models.references import ModelError
from inkloop.storage.cache import cache_dir

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
#: The MLflow Model Registry's references (:mod:`inkloop.models.mlflow_registry`).
MLFLOW_SCHEMES = ("mlflow://", "models:/")
#: References to a version or an alias in a model registry, of either backend.
REGISTRY_SCHEMES = (SCHEME, *MLFLOW_SCHEMES)

# Names, versions and aliases become path components: keep them to a portable, unambiguous set.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
AUTO_VERSION_RE = re.compile(r"^v(\d+)$")


def default_registry_url() -> str:
    """``$INKLOOP_REGISTRY``, else ``$XDG_DATA_HOME/inkloop/registry`` (``~/.local/share/…``)."""
    env = os.environ.get(REGISTRY_ENV, "").strip()
    if env:
        return env
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "inkloop" / "registry")


def default_cache_dir() -> Path:
    """``$INKLOOP_REGISTRY_CACHE``, else ``$XDG_CACHE_HOME/inkloop/registry`` (``~/.cache/…``)."""
    return cache_dir(CACHE_ENV, "registry")


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
    if not NAME_RE.match(name) or not NAME_RE.match(tag):
        raise bad
    return name, tag


def is_registry_ref(ref: object) -> bool:
    """Whether ``ref`` names a version or an alias in a model registry (``registry://``,
    ``mlflow://``, ``models:/``): the model comes from the registry with its card and checkpoint,
    and an alias in it may move (a server following it loads the new version)."""
    return isinstance(ref, str) and ref.startswith(REGISTRY_SCHEMES)


def check_name(kind: str, value: str) -> None:
    """Refuse a model name, version or alias (``kind``) outside the portable set."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ModelError(
            f"invalid {kind} {value!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def check_version_name(version: str) -> None:
    """Refuse a version name that is invalid or the alias folder's name."""
    check_name("version", version)
    if version == ALIASES_DIR:
        raise ModelError(f"invalid version {version!r}: reserved for the alias folder")


def check_alias_name(alias: str) -> None:
    """Refuse an alias that is invalid or looks like a version (``v3``)."""
    check_name("alias", alias)
    if AUTO_VERSION_RE.match(alias):
        # `@v3` must always mean version v3; an alias of that shape would make refs ambiguous.
        raise ModelError(f"invalid alias {alias!r}: names like v<N> are reserved for versions")


def version_sort_key(version: str) -> tuple[int, int, str]:
    """Auto-numbered versions by number (v2 before v10), then named versions by name."""
    m = AUTO_VERSION_RE.match(version)
    return (0, int(m.group(1)), version) if m else (1, 0, version)
