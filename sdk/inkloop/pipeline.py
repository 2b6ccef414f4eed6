"""Detection over a batch of documents: render, infer, map back, write — and never lose an input.

Rendering (pymupdf, Pillow, OpenCV) runs in a producer thread while onnxruntime infers batches in
the caller's thread, so both cores stay busy. pymupdf is not thread-safe, so every pymupdf call
holds :data:`PDF_LOCK`. Every input ends in exactly one place: ``results.jsonl`` (all its pages)
or ``quarantine.jsonl`` (with the reason); a document whose page fails midway is quarantined whole.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inkloop.detector import Detector, Prepared
from inkloop.documents import DocumentError, Limits, OpenedDocument, PageView, expand_inputs, open_document
from inkloop.results import ResultStore, Summary
from inkloop.routing import RoutingConfig, decoding_floor, kept, page_uncertainty, prepare_tta, route_run
from inkloop.routing import page_text as routing_page_text
from inkloop.types import Detection, PageResult, QuarantineRecord

log = logging.getLogger(__name__)

PDF_LOCK = threading.RLock()

ProgressFn = Callable[[str, dict[str, Any]], None]


@dataclass
class DetectOptions:
    """Knobs of a detection run; defaults suit a 2-core CPU worker."""

    model: str | None = None
    device: str = "cpu"
    conf: float | None = None
    iou: float | None = None
    batch_size: int = 4
    people_dpi: float = 150.0
    force: bool = False
    annotate_png: bool = False
    annotate_pdf: bool = False
    crops: bool = False
    limits: Limits = field(default_factory=Limits)
    threads: int | None = None
    queue_pages: int = 8
    #: Score each page's uncertainty while detecting (into results.jsonl) and write the budgeted
    #: decisions to routing.jsonl at the end of the run (:mod:`inkloop.routing`).
    routing: RoutingConfig | None = None


@dataclass
class _Item:
    doc: OpenedDocument
    view: PageView | None = None
    prepared: Prepared | None = None
    last: bool = False
    error: DocumentError | None = None
    tta: Prepared | None = None  # routing's second view, prepared here so the image can be dropped
    text: str = ""  # the PDF text layer, for routing's document cues


@dataclass
class _Skip:
    source: str
    doc_id: str


@dataclass
class _Fail:
    source: str
    error: DocumentError


_END = object()


def _produce(
    sources: Sequence[str],
    detector: Detector,
    store: ResultStore,
    opts: DetectOptions,
    out: queue.Queue[Any],
    stop: threading.Event,
) -> None:
    """Open each document, skip finished ones, render and preprocess its pages into ``out``."""
    size, mode = detector.input_size, detector.card.preprocessing
    routing = opts.routing
    seen: set[str] = set()
    try:
        for src in sources:
            if stop.is_set():
                break
            try:
                with PDF_LOCK:
                    doc = open_document(src, opts.limits, opts.people_dpi)
            except DocumentError as exc:
                out.put(_Fail(src, exc))
                continue
            except Exception as exc:  # never let one input sink the batch
                out.put(_Fail(src, DocumentError(src, f"unexpected error: {exc.__class__.__name__}: {exc}")))
                continue
            if doc.doc_id in seen or (not opts.force and store.is_done(doc.doc_id)):
                with PDF_LOCK:
                    doc.close()
                out.put(_Skip(src, doc.doc_id))
                continue
            seen.add(doc.doc_id)
            n = doc.document.page_count
            views: Iterator[PageView] = doc.model_views(size, mode)
            for i in range(n):
                try:
                    text = ""
                    with PDF_LOCK:
                        view = next(views)
                        if routing is not None and routing.cues:
                            text = routing_page_text(doc, i)
                    prepared = detector.prepare(view.image)
                    tta = None
                    if routing is not None and routing.tta:
                        tta = prepare_tta(detector, view.image, routing)
                    view.image = view.image[:0]  # the model copy is no longer needed
                except DocumentError as exc:
                    out.put(_Item(doc, error=exc, last=True))
                    break
                except Exception as exc:
                    err = DocumentError(src, f"page {i + 1}: {exc.__class__.__name__}: {exc}")
                    out.put(_Item(doc, error=err, last=True))
                    break
                out.put(_Item(doc, view, prepared, last=(i == n - 1), tta=tta, text=text))
    finally:
        out.put(_END)


class DetectionRun:
    """One run over a set of inputs into one output folder."""

    def __init__(self, out_dir: str | Path, options: DetectOptions | None = None, detector: Detector | None = None):
        self.opts = options or DetectOptions()
        self.detector = detector or Detector(
            self.opts.model, device=self.opts.device, conf=self.opts.conf, iou=self.opts.iou, threads=self.opts.threads
        )
        self.out_dir = Path(out_dir)

    def run(self, inputs: Sequence[str], progress: ProgressFn | None = None) -> Summary:
        notify = progress or (lambda event, info: None)
        t0 = time.perf_counter()
        sources = expand_inputs(inputs)
        notify("start", {"documents": len(sources)})
        summary = Summary(model_version=self.detector.model_version, out_dir=str(self.out_dir))
        q: queue.Queue[Any] = queue.Queue(maxsize=self.opts.queue_pages)
        stop = threading.Event()
        with ResultStore(self.out_dir) as store:
            producer = threading.Thread(
                target=_produce, args=(sources, self.detector, store, self.opts, q, stop), daemon=True
            )
            producer.start()
            pending: dict[int, list[PageResult]] = {}
            failed: set[int] = set()
            batch: list[_Item] = []
            try:
                while True:
                    msg = q.get()
                    if msg is _END:
                        self._flush(batch, pending, failed, store, summary, notify)
                        break
                    if isinstance(msg, _Fail):
                        self._quarantine(store, summary, msg.source, None, msg.error, notify)
                        continue
                    if isinstance(msg, _Skip):
                        summary.skipped += 1
                        notify("skip", {"source": msg.source, "doc_id": msg.doc_id})
                        continue
                    batch.append(msg)
                    if len(batch) >= self.opts.batch_size or msg.last or msg.error:
                        self._flush(batch, pending, failed, store, summary, notify)
                        batch = []
            finally:
                stop.set()
                producer.join(timeout=5)
                summary.seconds = time.perf_counter() - t0
                store.write_summary(summary)
                if self.opts.force:
                    store.compact()
        if self.opts.routing is not None:
            routed = route_run(self.out_dir, self.opts.routing)
            decisions = [r.decision for r in routed]
            notify("routing", {d: decisions.count(d) for d in ("review", "audit", "auto_accept")})
        notify("end", summary.to_dict())
        return summary

    # -- internals -----------------------------------------------------------------------------
    def _flush(
        self,
        batch: list[_Item],
        pending: dict[int, list[PageResult]],
        failed: set[int],
        store: ResultStore,
        summary: Summary,
        notify: ProgressFn,
    ) -> None:
        ok = [it for it in batch if it.error is None and it.prepared is not None]
        routing = self.opts.routing
        with decoding_floor(self.detector, routing) as threshold:  # near misses too, when routing
            dets = self.detector.run([it.prepared for it in ok if it.prepared is not None]) if ok else []
            tta_ok = [it for it in ok if it.tta is not None]
            tta_dets = self.detector.run([it.tta for it in tta_ok if it.tta is not None]) if tta_ok else []
        by_item = {id(it): d for it, d in zip(ok, dets, strict=True)}
        tta_by_item = {id(it): d for it, d in zip(tta_ok, tta_dets, strict=True)}
        for it in batch:
            key = id(it.doc)
            if key in failed:
                continue
            if it.error is not None:
                pending.pop(key, None)
                failed.add(key)
                self._quarantine(store, summary, it.doc.source, it.doc.doc_id, it.error, notify)
                with PDF_LOCK:
                    it.doc.close()
                continue
            assert it.view is not None
            view = it.view
            mapped = [
                Detection(d.label, d.score, view.to_page(d.xyxy)) for d in by_item[id(it)]
            ]
            result = PageResult(
                page=view.page,
                detections=kept(mapped, threshold),  # what a run without routing keeps
                model_version=self.detector.model_version,
                source=it.doc.source,
            )
            if routing is not None:
                tta = tta_by_item.get(id(it))
                tta_mapped = None
                if tta is not None:
                    tta_mapped = [Detection(d.label, d.score, view.to_page(d.xyxy)) for d in tta]
                result.uncertainty, result.reasons = page_uncertainty(
                    mapped, threshold, routing, tta_detections=tta_mapped, text=it.text
                )
            pending.setdefault(key, []).append(result)
            if it.last:
                self._finish(it.doc, pending.pop(key), store, summary, notify)

    def _finish(
        self, doc: OpenedDocument, results: list[PageResult], store: ResultStore, summary: Summary, notify: ProgressFn
    ) -> None:
        try:
            self._write_outputs(doc, results)
        except Exception as exc:  # outputs are extras; results still count
            log.warning("%s: could not write annotated outputs: %s", doc.source, exc)
        finally:
            with PDF_LOCK:
                doc.close()
        store.write_document(results)
        summary.documents += 1
        summary.pages += len(results)
        summary.pages_with_detections += sum(1 for r in results if r.detections)
        summary.detections += sum(len(r.detections) for r in results)
        notify("document", {"source": doc.source, "doc_id": doc.doc_id, "pages": len(results),
                            "detections": sum(len(r.detections) for r in results)})

    def _quarantine(
        self, store: ResultStore, summary: Summary, source: str, doc_id: str | None, err: DocumentError, notify: ProgressFn
    ) -> None:
        rec = QuarantineRecord(source=source, reason=err.reason, error=err.kind, doc_id=doc_id)
        store.write_quarantine(rec)
        summary.quarantined += 1
        summary.quarantine_reasons[err.kind] = summary.quarantine_reasons.get(err.kind, 0) + 1
        log.info("quarantined %s: %s", source, err.reason)
        notify("quarantine", {"source": source, "reason": err.reason, "error": err.kind})

    def _write_outputs(self, doc: OpenedDocument, results: list[PageResult]) -> None:
        o = self.opts
        if not (o.annotate_png or o.crops or (o.annotate_pdf and doc.kind == "pdf")):
            return
        from inkloop import outputs

        stem = f"{outputs.safe_stem(doc.source)}-{doc.doc_id[:8]}"
        for r in results:
            if not (o.annotate_png or (o.crops and r.detections)):
                continue
            with PDF_LOCK:
                img = doc.render_for_people(r.page.index)
            if o.annotate_png:
                outputs.write_png(outputs.draw_boxes(img, r.detections), self.out_dir / "annotated" / f"{stem}-p{r.page.index + 1}.png")
            if o.crops:
                for k, d in enumerate(r.detections):
                    outputs.write_png(outputs.crop(img, d), self.out_dir / "crops" / f"{stem}-p{r.page.index + 1}-{k + 1}.png")
        if o.annotate_pdf and doc.kind == "pdf":
            with PDF_LOCK:
                outputs.annotate_pdf(doc.path, results, self.out_dir / "annotated" / f"{stem}.pdf")


def detect(
    inputs: Sequence[str], out_dir: str | Path, options: DetectOptions | None = None, progress: ProgressFn | None = None
) -> Summary:
    """Detect over files, folders or storage URLs; write results to ``out_dir``; return the summary."""
    return DetectionRun(out_dir, options).run(inputs, progress)
