"""One entry point for every model reference: bundled, a local path, ``hf://``, ``registry://``,
``mlflow://`` / ``models:/`` (the MLflow Model Registry)."""

from __future__ import annotations

import os

from inkloop.models.references import (
    ModelError,
    ModelRef,
    bundled_model_path,
    is_triton_ref,
    load_hf,
    load_local,
)
from inkloop.models.registry import (
    MLFLOW_SCHEMES,
    SCHEME,
    ModelRegistry,
    Registry,
    default_registry_url,
    parse_registry_ref,
)

#: What a ``registry=`` argument accepts across the stages: a registry object (used as is), its URL
#: or folder, or None for the default (``$INKLOOP_REGISTRY``); :func:`open_registry` turns it into one.
RegistryArg = str | os.PathLike[str] | ModelRegistry | None


def resolve_model(ref: str | os.PathLike[str] | None = None) -> ModelRef:
    """Turn any accepted model reference into a checked local ONNX file and its card."""
    if ref is None or str(ref) in ("", "bundled"):
        path = bundled_model_path()
        if not path.exists():
            raise ModelError(f"the bundled model is missing from the installation ({path})")
        return load_local(path, ref="bundled")
    s = str(ref)
    if is_triton_ref(s):
        raise ModelError(
            f"{s} is served by Triton: there is no local file; pass the reference to Detector "
            "(inkloop.detection.detector), which infers through the server"
        )
    if s.startswith("hf://"):
        return load_hf(s)
    if s.startswith("registry://"):
        name, tag = parse_registry_ref(s)
        return open_registry().fetch(name, tag, ref=s)
    if s.startswith(MLFLOW_SCHEMES):
        from inkloop.models.mlflow_registry import resolve_mlflow_ref

        return resolve_mlflow_ref(s)
    return load_local(s)


def open_registry(
    registry: RegistryArg = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ModelRegistry:
    """The registry a URL names (one interface, two implementations).

    ``mlflow`` (with ``$MLFLOW_TRACKING_URI``) or ``mlflow+http://host:port`` open the MLflow
    Model Registry (:class:`inkloop.models.mlflow_registry.MlflowRegistry`); anything else is an
    fsspec URL or folder (:class:`Registry`). ``None`` means ``$INKLOOP_REGISTRY`` or the default
    folder. A registry object is returned as is.
    """
    if registry is not None and not isinstance(registry, str | os.PathLike):
        return registry
    url = str(registry) if registry is not None else default_registry_url()
    if url == "mlflow" or url.startswith("mlflow+"):
        from inkloop.models.mlflow_registry import MlflowRegistry

        return MlflowRegistry(url, cache_dir=cache_dir)
    return Registry(url, cache_dir=cache_dir)


def open_registry_ref(ref: str, registry: RegistryArg = None) -> tuple[ModelRegistry, str, str]:
    """The registry a registry reference points into, and the model's name and tag in it.

    ``registry://name@tag`` is looked up in ``registry`` (None: ``$INKLOOP_REGISTRY`` or the
    default folder); ``mlflow://…`` and ``models:/…`` in the MLflow Model Registry: ``registry``
    when it is one (``mlflow``, ``mlflow+http://…``, an :class:`MlflowRegistry`), else
    ``$MLFLOW_TRACKING_URI``'s. One rule for every caller (the CLI, retraining, the ML backend),
    so a reference means the same model everywhere. :class:`ModelError` for anything else.
    """
    if ref.startswith(SCHEME):
        name, tag = parse_registry_ref(ref)
        return open_registry(registry), name, tag
    if ref.startswith(MLFLOW_SCHEMES):
        from inkloop.models.mlflow_registry import parse_mlflow_ref

        name, tag = parse_mlflow_ref(ref)
        if isinstance(registry, ModelRegistry):
            an_mlflow_one = registry.ref_scheme != SCHEME
        else:
            an_mlflow_one = registry is not None and os.fspath(registry).startswith("mlflow")
        return open_registry(registry if an_mlflow_one else "mlflow"), name, tag
    raise ModelError(f"{ref!r} is not a registry reference (registry://, mlflow:// or models:/)")
