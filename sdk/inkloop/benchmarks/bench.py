"""Throughput benchmark: inkloop's pipeline against the bare model and against the obvious alternative.

One invocation measures, on the same pages and the same ONNX model:

- **bare model** — ``InferenceSession.run`` alone, per input kind, on the tensors the pipeline
  feeds the model for those pages: a plain session (onnxruntime's default threads) at batch 1 and
  at the pipeline's batch size (the issue's "limit"), and the pipeline's own session and threading
  (``model_b1_x2`` on 2 cores: two single-threaded runs at once), the best arrangement measured;
- **pipeline** — :class:`inkloop.detection.pipeline.DetectionRun` end to end (open, hash, render, preprocess,
  infer, decode, map back, write ``results.jsonl``) on three kinds of input: page images
  (PNG/JPEG), scanned PDFs (each page one large embedded JPEG, as scanners write them) and
  born-digital PDFs (text, vector drawings and a pasted signature image);
- **alternative** — what a user would write without inkloop: pymupdf's ``page.get_pixmap(dpi=150)``
  (or the image file itself), then ``ultralytics.YOLO(model.onnx).predict(...)`` page by page;
- detection agreement between pipeline and alternative, page by page, in page pixels;
- peak RSS of the pipeline on a long and on a short scanned PDF, each in a fresh subprocess;
- optionally, other variants of the model (INT8, OpenVINO) beside fp32.

Each contender is warmed up first; then all contenders run once per round, in a rotating order,
for several rounds, and the median is reported: the machine is shared and noisy, and ratios
measured in one run are what matter. Nothing here asserts a speed: targets are printed, not tested.
"""

from __future__ import annotations

import io
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Where the committed sample pages live in a source checkout (the default page source).
FIXTURE_PAGES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "pages"
#: A scanned US-letter page at 300 dpi, the size real scanners produce.
SCAN_PX = (2550, 3300)
LETTER_PT = (612.0, 792.0)
KINDS = ("images", "scanned", "digital")
#: Targets from the throughput issue (printed beside the measurements, never asserted in tests).
TARGET_VS_MODEL = 0.9
TARGET_VS_ALTERNATIVE = 1.5
TARGET_MEMORY_RATIO = 1.2


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


# ---------------------------------------------------------------------------------------------
# The corpus: built from the committed fixture pages, repeated to N pages, every file unique


def fixture_pages(pages_dir: str | Path | None = None) -> list[Path]:
    d = Path(pages_dir) if pages_dir else FIXTURE_PAGES
    pages = sorted(p for p in d.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not pages:
        raise FileNotFoundError(
            f"no page images in {d}; pass --pages-dir with PNG/JPEG pages (a source checkout has "
            "tests/fixtures/pages)"
        )
    return pages


def unique_jpeg(data: bytes, tag: str) -> bytes:
    """The same JPEG with a COM segment carrying ``tag``: same pixels, different bytes and hash."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    body = tag.encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[2:]


def unique_png(data: bytes, tag: str) -> bytes:
    """The same PNG with a ``tEXt`` chunk carrying ``tag`` right after IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    ihdr_end = 8 + 4 + 4 + 13 + 4
    payload = b"Comment\x00" + tag.encode()
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def _signature_crop(page: Path) -> bytes | None:
    """The first labelled signature of a fixture page, as PNG bytes (for born-digital pages)."""
    from PIL import Image

    label = page.with_suffix(".txt")
    if not label.exists():
        return None
    rows = [r.split() for r in label.read_text().splitlines() if r.strip()]
    if not rows:
        return None
    _c, cx, cy, w, h = (float(v) for v in rows[0][:5])
    with Image.open(page) as im:
        W, H = im.size
        box = (
            max(0, int((cx - w / 2 - 0.01) * W)),
            max(0, int((cy - h / 2 - 0.01) * H)),
            min(W, int((cx + w / 2 + 0.01) * W)),
            min(H, int((cy + h / 2 + 0.01) * H)),
        )
        buf = io.BytesIO()
        im.crop(box).convert("L").save(buf, "PNG")
    return buf.getvalue()


def make_images(out: Path, n: int, pages: Sequence[Path]) -> list[Path]:
    """``n`` page images (the fixture PNGs/JPEGs, cycled), each file's bytes unique."""
    out.mkdir(parents=True, exist_ok=True)
    raw = [p.read_bytes() for p in pages]
    files = []
    for i in range(n):
        src, data = pages[i % len(pages)], raw[i % len(pages)]
        tag = f"inkloop-bench page {i}"
        data = unique_png(data, tag) if data[:4] == b"\x89PNG" else unique_jpeg(data, tag)
        f = out / f"page-{i:05d}{src.suffix.lower()}"
        f.write_bytes(data)
        files.append(f)
    return files


@dataclass(frozen=True)
class ScanJpeg:
    data: bytes
    gray: bool


def scan_jpegs(pages: Sequence[Path], quality: int = 80) -> list[ScanJpeg]:
    """Each fixture page upscaled to a 300-dpi letter scan (2550×3300) and JPEG-encoded once."""
    from PIL import Image

    out = []
    for p in pages:
        with Image.open(p) as im:
            mode = "L" if im.mode in ("L", "1", "LA") else "RGB"
            big = im.convert(mode).resize(SCAN_PX, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=quality, dpi=(300, 300))
        out.append(ScanJpeg(buf.getvalue(), mode == "L"))
    return out


def make_scanned_pdf(
    path: Path, n: int, jpegs: Sequence[ScanJpeg], start: int = 0, style: str = "scanner"
) -> Path:
    """A PDF of ``n`` letter pages, each exactly one embedded (unique) JPEG covering the page.

    ``style="scanner"`` writes the file the way scanners do (a bare ``/DeviceGray`` or
    ``/DeviceRGB`` DCTDecode image per page, a one-line content stream); ``style="pymupdf"``
    builds it with pymupdf's ``insert_image``, which adds ICC-based colorspaces.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if style == "pymupdf":
        import pymupdf

        doc = pymupdf.open()
        for i in range(n):
            k = start + i
            page = doc.new_page(width=LETTER_PT[0], height=LETTER_PT[1])
            data = unique_jpeg(jpegs[k % len(jpegs)].data, f"{path.name} scan {k}")
            page.insert_image(page.rect, stream=data, keep_proportion=False)
        doc.save(path, garbage=0, deflate=False)
        doc.close()
        return path
    w_pt, h_pt = LETTER_PT
    content = f"q {w_pt:g} 0 0 {h_pt:g} 0 0 cm /Im0 Do Q".encode()
    offsets: list[int] = []
    with path.open("wb") as f:
        f.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")

        def obj(body: bytes, stream: bytes | None = None) -> None:
            offsets.append(f.tell())
            f.write(f"{len(offsets)} 0 obj\n".encode() + body)
            if stream is not None:
                f.write(b"\nstream\n" + stream + b"\nendstream")
            f.write(b"\nendobj\n")

        kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(n))
        obj(b"<< /Type /Catalog /Pages 2 0 R >>")
        obj(f"<< /Type /Pages /Count {n} /Kids [{kids}] >>".encode())
        for i in range(n):
            k = start + i
            scan = jpegs[k % len(jpegs)]
            data = unique_jpeg(scan.data, f"{path.name} scan {k}")
            page, contents, image = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
            assert len(offsets) + 1 == page
            obj(
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w_pt:g} {h_pt:g}] "
                f"/Resources << /XObject << /Im0 {image} 0 R >> >> /Contents {contents} 0 R >>".encode()
            )
            obj(f"<< /Length {len(content)} >>".encode(), content)
            cs = "/DeviceGray" if scan.gray else "/DeviceRGB"
            obj(
                f"<< /Type /XObject /Subtype /Image /Width {SCAN_PX[0]} /Height {SCAN_PX[1]} "
                f"/ColorSpace {cs} /BitsPerComponent 8 /Filter /DCTDecode /Length {len(data)} >>".encode(),
                data,
            )
        xref = f.tell()
        f.write(f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode())
        f.write(b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets))
        f.write(f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return path


_WORDS = " ".join(
    (
        "The parties agree to the terms and conditions set out in this agreement, including the schedule",
        "of payments, the confidentiality obligations and the governing law clause described below.",
    )
).split(" ")


def make_digital_pdf(path: Path, n: int, signatures: Sequence[bytes | None], start: int = 0) -> Path:
    """A born-digital PDF: text, ruled vector lines, and (on most pages) a pasted signature image."""
    import pymupdf

    path.parent.mkdir(parents=True, exist_ok=True)
    doc = pymupdf.open()
    sigs = [s for s in signatures if s]
    for i in range(n):
        k = start + i
        page = doc.new_page(width=LETTER_PT[0], height=LETTER_PT[1])
        page.insert_text((72, 90), f"Agreement no. {k:05d}", fontsize=18)
        y = 130.0
        for line in range(28):
            words = [_WORDS[(k + line + j) % len(_WORDS)] for j in range(11)]
            page.insert_text((72, y), " ".join(words), fontsize=10)
            y += 16
        shape = page.new_shape()
        for r in range(4):  # a small table
            shape.draw_line((72, 600 + 14 * r), (540, 600 + 14 * r))
        shape.draw_rect(pymupdf.Rect(72, 600, 540, 642))
        shape.finish(color=(0, 0, 0), width=0.6)
        shape.commit()
        page.insert_text((72, 690), "Signature:", fontsize=11)
        page.draw_line((140, 712), (360, 712), color=(0, 0, 0), width=0.5)
        if sigs and k % 4 != 3:  # three pages in four are signed
            png = unique_png(sigs[k % len(sigs)], f"{path.name} sig {k}")
            page.insert_image(pymupdf.Rect(150, 660, 350, 710), stream=png, keep_proportion=True)
    doc.save(path, garbage=0, deflate=True)
    doc.close()
    return path


@dataclass
class Corpus:
    """The benchmark's inputs: files per kind, and the pages each kind has."""

    root: Path
    files: dict[str, list[Path]]
    pages: dict[str, int]


def build_corpus(root: Path, cfg: BenchConfig) -> Corpus:
    pages = fixture_pages(cfg.pages_dir)
    n, per = cfg.pages, max(1, cfg.pages_per_doc)
    files: dict[str, list[Path]] = {"images": make_images(root / "images", n, pages)}
    jpegs = scan_jpegs(pages, cfg.jpeg_quality)
    sigs = [_signature_crop(p) for p in pages]
    # half the scans written the way scanners do (DeviceGray/RGB), half by pymupdf (ICC-based)
    files["scanned"] = [
        make_scanned_pdf(
            root / "scanned" / f"scan-{s:04d}.pdf",
            min(per, n - s),
            jpegs,
            start=s,
            style="scanner" if (s // per) % 2 == 0 else "pymupdf",
        )
        for s in range(0, n, per)
    ]
    files["digital"] = [
        make_digital_pdf(root / "digital" / f"digital-{s:04d}.pdf", min(per, n - s), sigs, start=s)
        for s in range(0, n, per)
    ]
    return Corpus(root, files, {k: n for k in KINDS})


# ---------------------------------------------------------------------------------------------
# Contenders


Boxes = list[tuple[tuple[float, float, float, float], float]]
PageBoxes = dict[tuple[str, int], Boxes]


def _clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def pipeline_options(cfg: BenchConfig) -> Any:
    """The pipeline's options for the benchmark: its defaults unless the config overrides them."""
    from inkloop.detection.pipeline import DetectOptions

    opts = DetectOptions(model=cfg.model, threads=cfg.threads)  # every run writes to a fresh folder
    if cfg.batch_size:
        opts.batch_size = cfg.batch_size
    if cfg.workers:
        opts.inference_workers = cfg.workers
    return opts


def model_tensors(
    corpus: Corpus, kind: str, detector: Any, prepare: Callable[[np.ndarray], Any], n: int
) -> list[Any]:
    """The first ``n`` pages of one kind, rendered and prepared the pipeline's way."""
    from inkloop.documents.opening import open_document

    got: list[Any] = []
    size, mode = detector.input_size, detector.card.preprocessing
    for f in corpus.files[kind]:
        with open_document(f) as d:
            for view in d.model_views(size, mode):
                got.append(prepare(view.image))
                if len(got) >= n:
                    return got
    return got


def pipeline_batch(detector: Any, batch: int) -> int:
    """The batch the pipeline runs ``detector`` at (page by page on CPU backends): the bare
    model is timed the same way, so the ratio compares like with like."""
    from inkloop.detection.pipeline import infers_page_by_page

    return 1 if infers_page_by_page(detector) else batch


def bare_model(detector: Any, prepared: Sequence[Any], batch: int, workers: int = 1) -> float:
    """Seconds for ``session.run`` alone over the tensors, ``batch`` at a time, no decoding.

    Tensors of the same shape are batched together. With ``workers`` > 1, that many threads
    call ``run`` at once on the same session (the pipeline's arrangement).
    """
    sess, name = detector.session, detector.input_name
    groups: dict[tuple[int, ...], list[np.ndarray]] = {}
    for p in prepared:
        groups.setdefault(p.tensor.shape, []).append(p.tensor)
    chunks = [np.stack(ts[i : i + batch]) for ts in groups.values() for i in range(0, len(ts), batch)]

    def work(part: Sequence[np.ndarray]) -> None:
        for b in part:
            sess.run(None, {name: b})

    t0 = time.perf_counter()
    if workers <= 1:
        work(chunks)
    else:
        import threading

        threads = [threading.Thread(target=work, args=(chunks[k::workers],)) for k in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return time.perf_counter() - t0


def pipeline_run(run: Any, files: Sequence[Path], out_dir: Path) -> float:
    """Seconds for one :meth:`DetectionRun.run` over ``files`` into a fresh ``out_dir``."""
    shutil.rmtree(out_dir, ignore_errors=True)
    run.out_dir = out_dir
    return _clock(lambda: run.run([str(f) for f in files]))[0]


def pipeline_boxes(out_dir: Path) -> PageBoxes:
    from inkloop.detection.results import read_results

    out: PageBoxes = {}
    for r in read_results(out_dir):
        out[(Path(r.source or "").name, r.page.index)] = [(tuple(d.xyxy), d.score) for d in r.detections]
    return out


class Alternative:
    """The obvious alternative: pymupdf at 150 dpi (or the image file) + ultralytics' predict."""

    def __init__(self, model_path: Path, imgsz: int, conf: float, iou: float, dpi: float = 150.0) -> None:
        from inkloop.lifecycle.training import offline_env

        os.environ.setdefault("YOLO_VERBOSE", "false")  # a benchmark's output is its table
        offline_env()
        from ultralytics import YOLO

        self.yolo = YOLO(str(model_path), task="detect")
        self.kw = dict(imgsz=imgsz, conf=conf, iou=iou, device="cpu", verbose=False)
        self.dpi = round(dpi)  # pymupdf wants an integer dpi

    def _predict(self, src: Any) -> Boxes:
        res = self.yolo.predict(src, **self.kw)[0]
        xyxy = res.boxes.xyxy.cpu().numpy().tolist()
        conf = res.boxes.conf.cpu().numpy().tolist()
        return [(tuple(float(v) for v in b), float(s)) for b, s in zip(xyxy, conf, strict=True)]

    def run(self, files: Sequence[Path]) -> PageBoxes:
        import pymupdf

        out: PageBoxes = {}
        for f in files:
            if f.suffix.lower() != ".pdf":
                out[(f.name, 0)] = self._predict(str(f))
                continue
            with pymupdf.open(f) as doc:
                for i, page in enumerate(doc):
                    pix = page.get_pixmap(dpi=self.dpi)
                    img = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, pix.n)
                    out[(f.name, i)] = self._predict(np.ascontiguousarray(img[:, :, ::-1]))  # RGB → BGR
        return out


# ---------------------------------------------------------------------------------------------
# Agreement between two sets of detections


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(
    ours: PageBoxes, theirs: PageBoxes, tolerance_px: float, conf: float, margin: float = 0.05
) -> dict[str, Any]:
    """Page-by-page agreement: same number of boxes, each paired box within ``tolerance_px``.

    Boxes are paired greedily by IoU (≥ 0.5), highest score first. A disagreement whose unpaired
    boxes all score within ``margin`` of the threshold is counted as a threshold flip: the two
    renderings differ slightly, and a box at 0.26 in one can be 0.24 in the other.
    """
    keys = sorted(set(ours) | set(theirs))
    agree = flips = 0
    devs: list[float] = []
    score_diffs: list[float] = []
    mismatches: list[dict[str, Any]] = []
    n_ours = n_theirs = 0
    for key in keys:
        a = sorted(ours.get(key, []), key=lambda x: -x[1])
        b = sorted(theirs.get(key, []), key=lambda x: -x[1])
        n_ours += len(a)
        n_theirs += len(b)
        used: set[int] = set()
        unpaired_a: list[float] = []
        page_dev, page_iou = 0.0, 1.0
        for box, score in a:
            best, best_j = 0.0, -1
            for j, (box2, _s2) in enumerate(b):
                if j not in used and (v := _iou(box, box2)) > best:
                    best, best_j = v, j
            if best_j < 0 or best < 0.5:
                unpaired_a.append(score)
                continue
            used.add(best_j)
            page_iou = min(page_iou, best)
            dev = max(abs(x - y) for x, y in zip(box, b[best_j][0], strict=True))
            devs.append(dev)
            score_diffs.append(abs(score - b[best_j][1]))
            page_dev = max(page_dev, dev)
        unpaired_b = [s for j, (_bx, s) in enumerate(b) if j not in used]
        if not unpaired_a and not unpaired_b and page_dev <= tolerance_px:
            agree += 1
            continue
        flip = page_dev <= tolerance_px and all(abs(s - conf) <= margin for s in unpaired_a + unpaired_b)
        flips += flip
        mismatches.append(
            {
                "file": key[0],
                "page": key[1],
                "pipeline_boxes": len(a),
                "alternative_boxes": len(b),
                "max_deviation_px": round(page_dev, 2),
                "min_paired_iou": round(page_iou, 3),
                "unpaired_scores": [round(s, 3) for s in unpaired_a + unpaired_b],
                "threshold_flip": flip,
            }
        )
    return {
        "pages": len(keys),
        "pages_agree": agree,
        "agreement": round(agree / len(keys), 4) if keys else None,
        "threshold_flips": flips,
        "boxes_pipeline": n_ours,
        "boxes_alternative": n_theirs,
        "boxes_paired": len(devs),
        "median_deviation_px": round(statistics.median(devs), 2) if devs else None,
        "max_deviation_px": round(max(devs), 2) if devs else None,
        "max_score_diff": round(max(score_diffs), 4) if score_diffs else None,
        "tolerance_px": tolerance_px,
        "mismatches": mismatches[:25],
    }


# ---------------------------------------------------------------------------------------------
# Peak memory, each size in a fresh process


def _status_kb(field: str) -> int:
    """A field of ``/proc/self/status`` in KiB (``VmRSS``: now, ``VmHWM``: the peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_child(pdf: str, out_dir: str, cfg: BenchConfig) -> dict[str, Any]:
    """Run in a fresh process: the pipeline on one PDF; peak RSS and RSS once the model is loaded."""
    import resource

    from inkloop.detection.pipeline import DetectionRun

    run = DetectionRun(out_dir, pipeline_options(cfg))
    run.detector.detect([np.zeros((64, 64, 3), np.uint8)])  # arenas allocated, like any warm worker
    ready = _status_kb("VmRSS")
    t0 = time.perf_counter()
    summary = run.run([pdf])
    seconds = time.perf_counter() - t0
    # VmHWM is this process image's own peak; ru_maxrss would also count the parent's RSS at the
    # moment it spawned us (Linux keeps the high-water mark across fork + exec), off by a GB here
    peak = _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "pages": summary.pages,
        "seconds": round(seconds, 3),
        "rss_ready_mb": round(ready / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1),
    }


def measure_memory(pdf: Path, cfg: BenchConfig, work: Path) -> dict[str, Any]:
    out_dir = work / f"mem-out-{pdf.stem}"
    conf = {k: v for k, v in asdict(cfg).items() if k in ("model", "batch_size", "threads", "workers")}
    cmd = [
        sys.executable,
        "-m",
        "inkloop.benchmarks.bench",
        "memory-child",
        str(pdf),
        str(out_dir),
        json.dumps(conf),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    shutil.rmtree(out_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement failed on {pdf.name}: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Variants of the model (INT8, OpenVINO)


def discover_variants(
    cfg: BenchConfig, model_path: Path, card: Any, work: Path
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Variants to measure beside fp32, and notes on those that are not available.

    A variant is ``{"model": <onnx path>, "device": <provider short name>}``. INT8 comes from an
    explicit ``--variant int8=PATH``, a ``*int8*.onnx`` file beside the model, or else is made
    here with :func:`inkloop.lifecycle.variants.quantize_int8` (calibrated on the fixture pages: enough
    for a speed measurement, not for a model to ship). OpenVINO needs onnxruntime's provider.
    """
    import onnxruntime as ort

    found: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for name, path in cfg.variant_paths.items():
        found[name] = {"model": str(path), "device": "cpu"}
    if not any("int8" in k for k in found):
        siblings = sorted(p for p in model_path.parent.glob("*.onnx") if "int8" in p.name.lower())
        if siblings:
            found["int8"] = {"model": str(siblings[0]), "device": "cpu"}
        else:
            made = _quantize_int8(model_path, card, work, cfg)
            if isinstance(made, Path):
                found["int8"] = {
                    "model": str(made),
                    "device": "cpu",
                    "note": "quantized here on the fixture pages",
                }
            else:
                notes.append(f"int8: not available ({made})")
    from inkloop.detection.openvino_backend import available as openvino_runtime

    if "OpenVINOExecutionProvider" in ort.get_available_providers() or openvino_runtime():
        # onnxruntime's OpenVINO provider when this build has it, else OpenVINO Runtime itself
        found["openvino"] = {"model": str(model_path), "device": "openvino"}
    else:
        notes.append(
            "openvino: not available (no OpenVINOExecutionProvider in this onnxruntime build and "
            "no openvino package; pip install openvino)"
        )
    return found, notes


def _quantize_int8(model_path: Path, card: Any, work: Path, cfg: BenchConfig) -> Path | str:
    """An INT8 copy of the model from the SDK's variants module; a string says why there is none."""
    try:
        from inkloop.lifecycle.variants import quantize_int8
    except ImportError as exc:
        return f"no INT8 export in this installation ({exc})"
    out = work / "variants" / "model.int8.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        quantize_int8(model_path, out, card, fixture_pages(cfg.pages_dir))
    except Exception as exc:
        return f"inkloop.lifecycle.variants.quantize_int8 failed: {exc.__class__.__name__}: {exc}"
    return out


def _measure_variants(
    cfg: BenchConfig,
    fp32_path: Path,
    card: Any,
    tensors: Sequence[Any],
    corpus: Corpus,
    work: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    import dataclasses

    from inkloop.detection.detector import Detector
    from inkloop.detection.pipeline import DetectionRun
    from inkloop.models.references import ModelRef

    found, notes = discover_variants(cfg, fp32_path, card, work)
    out: dict[str, Any] = {"notes": notes}
    files = corpus.files["scanned"]
    opts = pipeline_options(cfg)
    cores = os.cpu_count() or 1
    workers = opts.inference_workers or min(2, cores)
    opts.inference_workers = workers
    threads = opts.threads or max(1, cores // workers)
    batch = opts.batch_size
    runs: dict[str, Any] = {}
    for name, spec in {"fp32": {"model": str(fp32_path), "device": "cpu"}, **found}.items():
        try:
            ref = ModelRef(
                path=Path(spec["model"]), card=dataclasses.replace(card, sha256=None), ref=spec["model"]
            )
            det = Detector(ref, device=spec["device"], threads=threads)
            runs[name] = DetectionRun(work / "out" / f"variant-{name}", opts, detector=det)
        except Exception as exc:
            notes.append(f"{name}: cannot load ({exc.__class__.__name__}: {exc})")
    say(f"variants: {', '.join(runs)}")

    for name, run in runs.items():  # warm-up
        bare_model(run.detector, tensors[:batch], pipeline_batch(run.detector, batch), workers)
        pipeline_run(run, files[:1], work / "out" / f"variant-warm-{name}")
    times: dict[str, dict[str, list[float]]] = {n: {"model": [], "pipeline": []} for n in runs}
    names = list(runs)
    for r in range(cfg.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            run = runs[name]
            times[name]["model"].append(
                bare_model(run.detector, tensors, pipeline_batch(run.detector, batch), workers)
            )
            times[name]["pipeline"].append(pipeline_run(run, files, work / "out" / f"variant-{name}"))
    base = pipeline_boxes(work / "out" / "variant-fp32")
    for name in names:
        row: dict[str, Any] = {
            "model": str(runs[name].detector.model.path),
            "model_pages_per_second": round(len(tensors) / _median(times[name]["model"]), 3),
            "pipeline_scanned_pages_per_second": round(
                corpus.pages["scanned"] / _median(times[name]["pipeline"]), 3
            ),
        }
        if name != "fp32":
            agree = compare(
                pipeline_boxes(work / "out" / f"variant-{name}"), base, cfg.tolerance_px, card.conf_threshold
            )
            row["agreement_with_fp32"] = agree["agreement"]
            row["note"] = found.get(name, {}).get("note", "")
        out[name] = row
    return out


# ---------------------------------------------------------------------------------------------
# The benchmark


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def _machine() -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_bench(cfg: BenchConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole benchmark in this process (memory in subprocesses); return the report dict."""
    from inkloop.detection.detector import Detector
    from inkloop.detection.pipeline import DetectionRun, _Inference

    say = log or (lambda msg: None)
    work = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="inkloop-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        say(f"building the corpus in {work} ({cfg.pages} pages per kind)")
        t0 = time.perf_counter()
        corpus = build_corpus(work / "corpus", cfg)
        build_seconds = time.perf_counter() - t0

        # the pipeline as a user gets it: it builds its own detector with its own thread settings
        run = DetectionRun(work / "out" / "pipeline", pipeline_options(cfg))
        det = run.detector
        batch = run.opts.batch_size
        cores = os.cpu_count() or 1
        pipe_threads = run.opts.threads or max(1, cores // run.workers)
        card = det.card
        report: dict[str, Any] = {
            "config": {
                **asdict(cfg),
                "batch_size": batch,
                "workers": run.workers,
                "threads": pipe_threads,
                "memory_pages": list(cfg.memory_pages),
            },
            "machine": _machine(),
            "corpus": {
                kind: {
                    "files": len(fs),
                    "pages": corpus.pages[kind],
                    "mb": round(sum(f.stat().st_size for f in fs) / 2**20, 1),
                }
                for kind, fs in corpus.files.items()
            },
            "model": {
                "path": str(det.model.path),
                "version": card.model_version,
                "input_size": card.input_size,
                "preprocessing": card.preprocessing,
                "conf": det.conf,
                "iou": det.iou,
                "dynamic_batch": det.dynamic_batch,
            },
        }
        report["corpus"]["build_seconds"] = round(build_seconds, 2)

        # (a) the bare model, per kind, on the tensors the pipeline feeds it for those pages
        say("preprocessing tensors for the bare-model measurement")
        prep = _Inference(det, 1, run.opts.rect_inputs)
        tensors = {
            kind: [_as_tensor(p) for p in model_tensors(corpus, kind, det, prep.prepare, cfg.bare_pages)]
            for kind in KINDS
        }
        prep.close()
        report["model"]["input_shapes"] = {
            kind: sorted({"×".join(map(str, t.tensor.shape[1:])) for t in ts}) for kind, ts in tensors.items()
        }
        plain = Detector(cfg.model, threads=cfg.threads)  # a session with onnxruntime's defaults
        bare: dict[str, tuple[Any, int, int]] = {"model_b1": (plain, 1, 1)}
        if batch > 1 and plain.dynamic_batch:
            bare[f"model_b{batch}"] = (plain, batch, 1)
        # the pipeline's own session and threading, nothing else: the model's best here
        pipe_batch = pipeline_batch(det, batch)
        bare[f"model_b{pipe_batch}_x{run.workers}"] = (det, pipe_batch, run.workers)

        alt: Alternative | None = None
        if cfg.alternative:
            alt = Alternative(det.model.path, card.input_size, det.conf, det.iou, cfg.alt_dpi)

        # contenders: (kind, name) → (callable returning wall seconds, pages per call)
        contenders: dict[tuple[str, str], tuple[Callable[[], float], int]] = {}
        last_alt: dict[str, PageBoxes] = {}
        for kind in KINDS:
            for name, (d, b, w) in bare.items():
                ts = tensors[kind]
                contenders[(kind, name)] = (lambda d=d, b=b, w=w, ts=ts: bare_model(d, ts, b, w), len(ts))
            files = corpus.files[kind]
            out_dir = work / "out" / kind
            contenders[(kind, "pipeline")] = (
                lambda files=files, out_dir=out_dir: pipeline_run(run, files, out_dir),
                corpus.pages[kind],
            )
            if alt is not None:

                def run_alt(files: list[Path] = files, kind: str = kind) -> float:
                    assert alt is not None
                    secs, boxes = _clock(lambda: alt.run(files))
                    last_alt[kind] = boxes
                    return secs

                contenders[(kind, "alternative")] = (run_alt, corpus.pages[kind])

        say("warming up every contender")
        warm = _warmup_files(corpus, cfg.warmup_pages, fixture_pages(cfg.pages_dir))
        for d, b, w in bare.values():
            for ts in tensors.values():
                bare_model(d, ts[: max(b * w, 2)], b, w)
        for kind in KINDS:
            pipeline_run(run, warm[kind], work / "out" / f"warm-{kind}")
            if alt is not None:
                alt.run(warm[kind])

        times: dict[tuple[str, str], list[float]] = {key: [] for key in contenders}
        cpu: dict[tuple[str, str], list[float]] = {key: [] for key in contenders}
        keys = list(contenders)
        for r in range(cfg.rounds):
            order = keys[r % len(keys) :] + keys[: r % len(keys)]
            say(f"round {r + 1}/{cfg.rounds}")
            for key in order:
                fn, _n = contenders[key]
                c0 = time.process_time()
                times[key].append(fn())
                cpu[key].append(time.process_time() - c0)
        timings: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        for (kind, name), (_fn, n) in contenders.items():
            wall, used = _median(times[(kind, name)]), _median(cpu[(kind, name)])
            timings[kind][name] = {
                "pages": n,
                "seconds": [round(t, 3) for t in times[(kind, name)]],
                "median_seconds": round(wall, 3),
                "pages_per_second": round(n / wall, 3),
                # CPU time of the whole process (all threads) per page: less sensitive to other
                # load on the machine than wall time; cpu/wall says how many cores were busy
                "cpu_ms_per_page": round(1000 * used / n, 2),
                "cores_busy": round(used / wall, 2),
            }
        report["timings"] = timings
        report["ratios"] = _ratios(timings, list(bare))

        if alt is not None:
            report["agreement"] = {
                kind: compare(pipeline_boxes(work / "out" / kind), last_alt[kind], cfg.tolerance_px, det.conf)
                for kind in KINDS
            }
            if cfg.agreement_conf is not None:
                say(f"comparing detections at score threshold {cfg.agreement_conf}")
                report["agreement_low_threshold"] = _agreement_at(cfg, corpus, work)

        if cfg.variants or cfg.variant_paths:
            all_tensors = [t for ts in tensors.values() for t in ts]
            report["variants"] = _measure_variants(cfg, det.model.path, card, all_tensors, corpus, work, say)

        if cfg.memory:
            small_n, large_n = cfg.memory_pages
            say(f"peak memory: {small_n}- and {large_n}-page scanned PDFs, each in a fresh process")
            jpegs = scan_jpegs(fixture_pages(cfg.pages_dir), cfg.jpeg_quality)
            mem: dict[str, Any] = {}
            for n in (small_n, large_n):
                pdf = make_scanned_pdf(work / "memory" / f"scan-{n}-pages.pdf", n, jpegs)
                mem[f"pages_{n}"] = measure_memory(pdf, cfg, work)
                mem[f"pages_{n}"]["file_mb"] = round(pdf.stat().st_size / 2**20, 1)
                pdf.unlink()
            small, large = mem[f"pages_{small_n}"], mem[f"pages_{large_n}"]
            mem["ratio"] = round(large["peak_rss_mb"] / small["peak_rss_mb"], 3)
            mem["target"] = TARGET_MEMORY_RATIO
            report["memory"] = mem
        report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        report["targets"] = _targets(report)
        return report
    finally:
        if not cfg.keep and not cfg.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _as_tensor(p: Any) -> Any:
    """A prepared page as the float32 CHW tensor the model gets (the pipeline queues uint8 HWC)."""
    from inkloop.detection.detector import Prepared
    from inkloop.detection.pipeline import _input_batch

    return Prepared(_input_batch([p.tensor])[0], p.transform)


def _agreement_at(cfg: BenchConfig, corpus: Corpus, work: Path) -> dict[str, Any]:
    """Pipeline vs alternative at ``cfg.agreement_conf`` (untimed), on every page of every kind."""
    from inkloop.detection.pipeline import DetectionRun

    opts = pipeline_options(cfg)
    opts.conf = cfg.agreement_conf
    run = DetectionRun(work / "out" / "agreement", opts)
    det = run.detector
    alt = Alternative(det.model.path, det.card.input_size, det.conf, det.iou, cfg.alt_dpi)
    out: dict[str, Any] = {"conf": det.conf}
    for kind in KINDS:
        out_dir = work / "out" / f"agreement-{kind}"
        pipeline_run(run, corpus.files[kind], out_dir)
        out[kind] = compare(pipeline_boxes(out_dir), alt.run(corpus.files[kind]), cfg.tolerance_px, det.conf)
    return out


def _warmup_files(corpus: Corpus, n: int, pages: Sequence[Path]) -> dict[str, list[Path]]:
    """A small, separate set of files per kind for warming up (not the timed ones)."""
    warm = corpus.root / "warmup"
    jpegs = scan_jpegs(pages[:1], 80)
    return {
        "images": make_images(warm / "images", n, pages),
        "scanned": [make_scanned_pdf(warm / "scan.pdf", n, jpegs, start=10**6)],
        "digital": [
            make_digital_pdf(warm / "digital.pdf", n, [_signature_crop(p) for p in pages], start=10**6)
        ],
    }


def _ratios(timings: dict[str, dict[str, Any]], bare: Sequence[str]) -> dict[str, Any]:
    """Per kind: pipeline vs the model as the issue defines it (a plain session, batch 1 or the
    pipeline's batch), vs the best bare arrangement measured (including the pipeline's own
    threading), and vs the alternative."""
    issue = [b for b in bare if "_x" not in b]
    out: dict[str, Any] = {}
    for kind in KINDS:
        t = timings[kind]
        limit = max(issue, key=lambda k: t[k]["pages_per_second"])
        best = max(bare, key=lambda k: t[k]["pages_per_second"])
        p = t["pipeline"]["pages_per_second"]
        row: dict[str, Any] = {
            "model_limit": limit,
            "model_limit_pages_per_second": t[limit]["pages_per_second"],
            "model_best": best,
            "model_best_pages_per_second": t[best]["pages_per_second"],
            "pipeline_vs_model": round(p / t[limit]["pages_per_second"], 3),
            "pipeline_vs_model_best": round(p / t[best]["pages_per_second"], 3),
        }
        if "alternative" in t:
            row["pipeline_vs_alternative"] = round(p / t["alternative"]["pages_per_second"], 3)
        # Where the rest goes: CPU the pipeline spends per page beyond the model's own (opening,
        # hashing, decoding, resizing, NMS, writing). With every core busy, throughput is cores /
        # CPU per page, so the best the pipeline can reach is model CPU / pipeline CPU.
        model_cpu, pipe_cpu = t[best]["cpu_ms_per_page"], t["pipeline"]["cpu_ms_per_page"]
        row["cpu_ms_per_page_model"] = model_cpu
        row["cpu_ms_per_page_pipeline"] = pipe_cpu
        row["cpu_overhead_ms_per_page"] = round(pipe_cpu - model_cpu, 2)
        row["ceiling_vs_model_best"] = round(model_cpu / pipe_cpu, 3) if pipe_cpu else None
        out[kind] = row
    return out


def _targets(report: dict[str, Any]) -> dict[str, Any]:
    r = report["ratios"]
    out: dict[str, Any] = {}
    for kind in KINDS:
        row = r[kind]
        for key, target, label in (
            ("pipeline_vs_model", TARGET_VS_MODEL, "vs_model"),
            ("pipeline_vs_model_best", TARGET_VS_MODEL, "vs_model_best"),
            ("pipeline_vs_alternative", TARGET_VS_ALTERNATIVE, "vs_alternative"),
        ):
            if key in row:
                out[f"{kind}_{label}"] = {"value": row[key], "target": target, "met": row[key] >= target}
        if "agreement" in report:
            a = report["agreement"][kind]
            out[f"{kind}_identical_detections"] = {
                "value": a["agreement"],
                "target": 1.0,
                "met": a["agreement"] == 1.0,
            }
    if "memory" in report:
        m = report["memory"]["ratio"]
        out["memory_ratio"] = {"value": m, "target": TARGET_MEMORY_RATIO, "met": m <= TARGET_MEMORY_RATIO}
    return out


def pages_per_hour(pages_per_second: float) -> int:
    return int(round(pages_per_second * 3600, -2))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "memory-child":
        print(json.dumps(memory_child(sys.argv[2], sys.argv[3], BenchConfig(**json.loads(sys.argv[4])))))
    else:
        print("usage: inkloop bench [--quick] [--out bench.json]  (this module's __main__ is internal)")
        sys.exit(2)
