"""What one benchmark run measures, and on what: :class:`BenchConfig` and the input kinds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("images", "scanned", "digital")


@dataclass
class BenchConfig:
    """What to measure; defaults are the full benchmark, :meth:`quick` a smoke-sized one."""

    model: str | None = None
    pages: int = 120  # pages per input kind
    rounds: int = 3
    batch_size: int | None = None  # None: the pipeline's default
    threads: int | None = None  # onnxruntime intra-op threads; None: the pipeline's default
    workers: int | None = None  # inference workers; None: the pipeline's default
    pages_per_doc: int = 10  # pages per PDF in the scanned and born-digital sets
    warmup_pages: int = 4
    alternative: bool = True
    alt_dpi: float = 150.0
    memory: bool = True
    memory_pages: tuple[int, int] = (5, 500)
    variants: bool = False
    variant_paths: dict[str, str] = field(default_factory=dict)
    #: A served copy of the model (``triton://host:port/model``): adds the pipeline and the bare
    #: model through that server as contenders, and their ratios to local inference.
    triton: str | None = None
    tolerance_px: float = 4.0  # page pixels (150 dpi for PDFs, native pixels for images)
    #: Also compare detections at this lower score threshold (an untimed extra pass), where an
    #: early or weak model has boxes to compare; None: only at the model's operating threshold.
    agreement_conf: float | None = None
    bare_pages: int = 40  # pages per kind for the bare-model measurement (its cost is per shape)
    jpeg_quality: int = 80
    pages_dir: str | None = None
    workdir: str | None = None
    keep: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        base: dict[str, Any] = dict(pages=8, rounds=1, pages_per_doc=4, warmup_pages=2, memory_pages=(2, 20))
        base.update(overrides)
        return cls(**base)
