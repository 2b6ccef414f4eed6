"""The model registry: immutable model versions, and movable aliases that point at them.

One interface, two backends (:func:`inkloop.models.resolve.open_registry` picks one from a URL):

- :mod:`~inkloop.models.registry.refs`: names and ``registry://name@alias`` references, the
  default registry URL and cache folder;
- :mod:`~inkloop.models.registry.base`: :class:`ModelRegistry`, the abstract interface with the
  rules both backends share (how tags resolve, how aliases move and roll back);
- :mod:`~inkloop.models.registry.files`: durable copies and the renames that commit a version or
  an alias;
- :mod:`~inkloop.models.registry.folders`: :class:`Registry`, folders under any fsspec URL (the
  layout and crash-safety rules are in its docstring), and
  :mod:`~inkloop.models.registry.cache`, the local copies of a remote registry's models;
- :class:`inkloop.models.mlflow_registry.MlflowRegistry`: the MLflow Model Registry.
"""

from __future__ import annotations

from inkloop.models.registry.base import AliasRecord, ModelRegistry
from inkloop.models.registry.folders import Registry, resolve_registry_ref
from inkloop.models.registry.refs import (
    CACHE_ENV,
    CARD_FILE,
    DEFAULT_ALIAS,
    MLFLOW_SCHEMES,
    MODEL_FILE,
    PT_FILE,
    REGISTRY_ENV,
    REGISTRY_SCHEMES,
    SCHEME,
    default_cache_dir,
    default_registry_url,
    is_registry_ref,
    parse_registry_ref,
)

__all__ = [
    "CACHE_ENV",
    "CARD_FILE",
    "DEFAULT_ALIAS",
    "MLFLOW_SCHEMES",
    "MODEL_FILE",
    "PT_FILE",
    "REGISTRY_ENV",
    "REGISTRY_SCHEMES",
    "SCHEME",
    "AliasRecord",
    "ModelRegistry",
    "Registry",
    "default_cache_dir",
    "default_registry_url",
    "is_registry_ref",
    "parse_registry_ref",
    "resolve_registry_ref",
]
