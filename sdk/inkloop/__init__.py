"""inkloop: keep a document-AI detector improving in production.

``import inkloop`` stays light (numpy, onnxruntime, pymupdf); heavy integrations import on use.
"""

from inkloop.types import SCHEMA_VERSION, Detection, Document, Page, PageResult, QuarantineRecord

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Detection",
    "Document",
    "Page",
    "PageResult",
    "QuarantineRecord",
    "__version__",
]
