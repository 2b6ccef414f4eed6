"""inkloop: keep a document-AI detector improving in production.

``import inkloop`` stays light (numpy, onnxruntime, pymupdf); heavy integrations import on use.
Importing it turns off the usage data the stack would send (:mod:`inkloop.privacy`), before any of
those libraries is imported through inkloop.
"""

from inkloop import privacy
from inkloop.types import SCHEMA_VERSION, Detection, Document, Page, PageResult, QuarantineRecord

privacy.apply()  # before anything imports onnxruntime, fiftyone, gradio, ultralytics, openvino

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
