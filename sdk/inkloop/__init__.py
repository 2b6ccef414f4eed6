"""inkloop: keep a document-AI detector improving in production.

``import inkloop`` stays light (the data model and the privacy switches); heavy integrations
import on use. Importing it turns off the usage data the stack would send (:mod:`inkloop.privacy`),
before any of those libraries is imported through inkloop.

The public API (:mod:`inkloop.api`: ``inkloop.detect``, ``DetectOptions``, ``read_results``,
``Registry``, ``resolve_model``, …) is importable from here too; it loads on first use (PEP 562),
so ``import inkloop`` does not pay for numpy, onnxruntime and pymupdf until a name needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inkloop import privacy
from inkloop.types import SCHEMA_VERSION, Detection, Document, Page, PageResult, QuarantineRecord

privacy.apply()  # before anything imports onnxruntime, fiftyone, gradio, ultralytics, openvino

if TYPE_CHECKING:
    from inkloop.api import (
        DetectOptions,
        Detector,
        DocumentVerdict,
        Limits,
        ModelCard,
        ModelError,
        ModelRef,
        ProgressFn,
        Registry,
        RoutingConfig,
        Summary,
        VerdictConfig,
        detect,
        open_registry,
        read_quarantine,
        read_results,
        read_routing,
        read_summary,
        read_verdicts,
        resolve_model,
    )

__version__ = "0.1.0"

# The data model and the version are loaded with the package; the other names are
# ``inkloop.api.__all__`` (tests/test_api.py keeps the lists equal), loaded on first access.
__all__ = [
    "SCHEMA_VERSION",
    "DetectOptions",
    "Detection",
    "Detector",
    "Document",
    "DocumentVerdict",
    "Limits",
    "ModelCard",
    "ModelError",
    "ModelRef",
    "Page",
    "PageResult",
    "ProgressFn",
    "QuarantineRecord",
    "Registry",
    "RoutingConfig",
    "Summary",
    "VerdictConfig",
    "__version__",
    "detect",
    "open_registry",
    "read_quarantine",
    "read_results",
    "read_routing",
    "read_summary",
    "read_verdicts",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    """``inkloop.<name>`` for a name of :mod:`inkloop.api` (PEP 562): imports the API on first use.

    Only the listed names load it: any other miss (``from inkloop import storage`` probing the
    package before importing the submodule, a tool probing ``__wrapped__``) stays an AttributeError.
    """
    if name in __all__:  # not set yet: one of inkloop.api's
        from inkloop import api

        value = getattr(api, name)
        globals()[name] = value  # the next access is a plain attribute
        return value
    raise AttributeError(f"module 'inkloop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
