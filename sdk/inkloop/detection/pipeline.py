"""Detection over a batch of documents: render, infer, map back, write — and never lose an input.

Rendering (pymupdf, Pillow, OpenCV) runs in a producer thread; onnxruntime infers batches in
worker threads (on a 2-core worker: two single-threaded runs at once, see :class:`_Inference`);
decoding, mapping back and writing stay in the caller's thread, in input order. So both cores stay
busy with useful work. pymupdf is not thread-safe, so every pymupdf call holds :data:`PDF_LOCK`.
Every input ends in exactly one place: ``results.jsonl`` (all its pages) or ``quarantine.jsonl``
(with the reason); a document whose page fails midway is quarantined whole. The output folder may
be a storage URL (``s3://…``): every write goes through :mod:`inkloop.storage`, and a run that
cannot write its results fails naming the URL, leaving its documents unseen for the next run.

This is detection alone; :func:`inkloop.api.detect` (``inkloop.detect``) is the entry point that
adds routing and the signing verdicts on top of a :class:`DetectionRun`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inkloop import storage
from inkloop.detection.detector import Detector, Prepared
from inkloop.detection.preprocess import as_rgb, letterbox, stretch
from inkloop.detection.results import ResultStore, Summary
from inkloop.detection.scoring import PageScorer, decoding_floor, kept, page_text
from inkloop.detection.triton_backend import InferenceUnavailable
from inkloop.documents.hashing import source_doc_id
from inkloop.documents.inputs import expand_inputs
from inkloop.documents.limits import DocumentError, Limits
from inkloop.documents.opening import OpenedDocument, open_document
from inkloop.documents.rendering import PageView
from inkloop.types import Detection, PageResult, QuarantineRecord

log = logging.getLogger(__name__)

PDF_LOCK = threading.RLock()

#: Backends that run on the CPU, where inference goes page by page (see :class:`_Inference`).
CPU_BACKENDS = ("CPUExecutionProvider", "OpenVINORuntime:CPU")


def infers_page_by_page(detector: Detector) -> bool:
    """True on CPU backends and for fixed-batch models: there a batch costs the same per page as
    single pages (38.8, 38.2, 38.6, 38.8 ms/page at batch 1, 2, 4, 8 with one thread, yolov8n
    352×416) but holds a batch's activations per worker; accelerators infer by the batch."""
    return detector.session.get_providers()[0] in CPU_BACKENDS or not detector.dynamic_batch


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
    #: onnxruntime intra-op threads per inference; None: the cores divided among the workers.
    threads: int | None = None
    #: Batches inferred at once, each in its own thread; None: 2 on a machine with 2+ cores (two
    #: 1-thread runs beat one 2-thread run on 2 cores: no thread-pool spinning, and rendering
    #: fills the gaps), 1 when a ready-made detector is passed in (its thread count is unknown).
    inference_workers: int | None = None
    #: For letterbox models with dynamic input sizes, pad pages to a multiple of the stride, not
    #: to the full square (as ultralytics' predict does): a letter page is 352×416, not 416×416.
    rect_inputs: bool = True
    queue_pages: int = 8
    #: fsspec storage options for the run's storage URLs (inbox and output folder), e.g.
    #: ``{"endpoint_url": …, "key": …, "secret": …}``; else the environment and fsspec's config.
    storage_options: dict[str, Any] | None = None


@dataclass
class _Item:
    doc: OpenedDocument
    view: PageView | None = None
    prepared: Prepared | None = None
    last: bool = False
    error: DocumentError | None = None
    second: Prepared | None = None  # the scorer's second view, prepared here so the image can be dropped
    text: str = ""  # the PDF text layer, for the scorer (routing's document cues)


@dataclass
class _Skip:
    source: str
    doc_id: str


@dataclass
class _Fail:
    source: str
    error: DocumentError
    doc_id: str | None = None


_END = object()

Raw = tuple["list[np.ndarray] | None", "list[np.ndarray] | None"]


def _input_batch(items: Sequence[np.ndarray]) -> np.ndarray:
    """A float32 NCHW batch in [0, 1] from uint8 HWC images (or float32 CHW tensors, stacked)."""
    if items[0].dtype != np.uint8:
        return np.stack(items)
    h, w = items[0].shape[:2]
    out = np.empty((len(items), 3, h, w), np.float32)
    for i, im in enumerate(items):
        out[i] = im.transpose(2, 0, 1)
    out *= 1.0 / 255.0
    return out


class _Inference:
    """The model's forward pass for a batch, in worker threads beside rendering and writing.

    onnxruntime releases the GIL while it runs, so the workers run in parallel with each other and
    with the producer. Only the forward pass runs there: decoding (threshold, NMS) stays in the
    caller's thread, where :func:`~inkloop.detection.scoring.decoding_floor` sets the detector's ``conf``.
    Anything that is not a plain onnxruntime :class:`Detector` (a stand-in, another backend
    overriding ``run``) is run whole, in the caller's thread, as before.
    """

    def __init__(self, detector: Detector, workers: int, rect: bool = True) -> None:
        self.detector = detector
        self.split = type(detector).run is Detector.run and getattr(detector, "session", None) is not None
        self.workers = max(1, workers)
        self.pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="inkloop-infer") if self.split else None
        )
        self.stride = detector.stride if self.split and rect else None
        self.per_page = self.split and infers_page_by_page(detector)

    def prepare(self, image: np.ndarray) -> Prepared:
        """The model input for a page image (runs in the producer thread).

        For the split path this is the resized, padded uint8 HWC image, 4× smaller than its
        float32 tensor while it waits in the queue; :func:`_input_batch` makes the tensor in the
        worker, straight into the batch (the same values :func:`inkloop.detection.preprocess.prepare` gives).
        """
        if not self.split:
            return self.detector.prepare(image)
        size, mode = self.detector.input_size, self.detector.card.preprocessing
        rgb = as_rgb(image)
        resized, transform = letterbox(rgb, size, self.stride) if mode == "letterbox" else stretch(rgb, size)
        return Prepared(np.ascontiguousarray(resized), transform)

    def submit(self, batch: list[_Item]) -> Future[Raw] | None:
        if self.pool is None:
            return None
        ok = [it for it in batch if it.error is None and it.prepared is not None]
        if not ok:
            return None
        plain = [it.prepared for it in ok if it.prepared is not None]
        second = [it.second for it in ok if it.second is not None]
        return self.pool.submit(lambda: (self._forward(plain), self._forward(second)))

    def _forward(self, batch: Sequence[Prepared]) -> list[np.ndarray] | None:
        """Raw head outputs, one per input; inputs of the same shape are run as one batch."""
        if not batch:
            return None
        d = self.detector
        out: list[Any] = [None] * len(batch)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(batch):
            groups.setdefault(p.tensor.shape, []).append(i)
        for idx in groups.values():
            if d.dynamic_batch and not self.per_page:
                raw = d.session.run(None, {d.input_name: _input_batch([batch[i].tensor for i in idx])})[0]
                for k, i in enumerate(idx):
                    out[i] = raw[k]
            else:
                for i in idx:
                    out[i] = d.session.run(None, {d.input_name: _input_batch([batch[i].tensor])})[0][0]
        return out

    def detections(self, batch: Sequence[Prepared], raw: list[np.ndarray] | None) -> list[list[Detection]]:
        if not batch:
            return []
        if raw is None:
            return self.detector.run(batch)
        return [self.detector.decode(r, p.transform) for r, p in zip(raw, batch, strict=True)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _produce(
    sources: Sequence[str],
    detector: Detector,
    store: ResultStore,
    opts: DetectOptions,
    out: queue.Queue[Any],
    stop: threading.Event,
    prepare: Callable[[np.ndarray], Prepared] | None = None,
    scorer: PageScorer | None = None,
) -> None:
    """Open each document, skip finished ones, render and preprocess its pages into ``out``."""
    size, mode = detector.input_size, detector.card.preprocessing
    prepare = prepare or detector.prepare
    seen: set[str] = set()
    try:
        for src in sources:
            if stop.is_set():
                break
            try:
                with PDF_LOCK:
                    doc = open_document(src, opts.limits, opts.people_dpi)
            except DocumentError as exc:
                out.put(_Fail(src, exc, source_doc_id(src)))
                continue
            except Exception as exc:  # never let one input sink the batch
                err = DocumentError(src, f"unexpected error: {exc.__class__.__name__}: {exc}")
                out.put(_Fail(src, err, source_doc_id(src)))
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
                        if scorer is not None and scorer.reads_text:
                            text = page_text(doc, i)
                    prepared = prepare(view.image)
                    second = scorer.second_view(detector, view.image) if scorer is not None else None
                    # the model copy is no longer needed (a [:0] slice would keep its buffer alive)
                    view.image = np.empty((0, 0, 3), np.uint8)
                except DocumentError as exc:
                    out.put(_Item(doc, error=exc, last=True))
                    break
                except Exception as exc:
                    err = DocumentError(src, f"page {i + 1}: {exc.__class__.__name__}: {exc}")
                    out.put(_Item(doc, error=err, last=True))
                    break
                out.put(_Item(doc, view, prepared, last=(i == n - 1), second=second, text=text))
    finally:
        out.put(_END)


class DetectionRun:
    """One run over a set of inputs into one output folder.

    With a ``scorer`` (routing's :class:`~inkloop.routing.RoutingScorer`) each page result also
    carries the scorer's ``uncertainty`` and ``reasons``; decisions over the run are the caller's
    (:func:`inkloop.api.detect`, the one entry point, makes them).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        options: DetectOptions | None = None,
        detector: Detector | None = None,
        scorer: PageScorer | None = None,
    ):
        self.opts = options or DetectOptions()
        self.scorer = scorer
        cores = os.cpu_count() or 1
        self.workers = self.opts.inference_workers or (1 if detector is not None else min(2, cores))
        threads = self.opts.threads or max(1, cores // self.workers)
        self.detector = detector or Detector(
            self.opts.model, device=self.opts.device, conf=self.opts.conf, iou=self.opts.iou, threads=threads
        )
        self.out_dir = os.fspath(out_dir)  # a URL stays a string (pathlib makes s3:// a folder "s3:")

    def run(self, inputs: Sequence[str], progress: ProgressFn | None = None) -> Summary:
        with storage.scoped_options(self.opts.storage_options):
            return self._run(inputs, progress)

    def _run(self, inputs: Sequence[str], progress: ProgressFn | None = None) -> Summary:
        notify = progress or (lambda event, info: None)
        t0 = time.perf_counter()
        sources = expand_inputs(inputs)
        notify("start", {"documents": len(sources)})
        summary = Summary(model_version=self.detector.model_version, out_dir=str(self.out_dir))
        q: queue.Queue[Any] = queue.Queue(maxsize=self.opts.queue_pages)
        stop = threading.Event()
        with ResultStore(self.out_dir) as store:
            summary.run_id = store.run_id
            infer = _Inference(self.detector, self.workers, self.opts.rect_inputs)
            producer = threading.Thread(
                target=_produce,
                args=(sources, self.detector, store, self.opts, q, stop, infer.prepare, self.scorer),
                daemon=True,
            )
            producer.start()
            # keyed by doc_id, unique within a run (duplicates are skipped); never by id(doc): a
            # failed document's object is freed and a later document may get the same id()
            pending: dict[str, list[PageResult]] = {}
            failed: set[str] = set()
            batch: list[_Item] = []
            # batches being inferred, oldest first; flushed in order, so documents finish in order
            inflight: deque[tuple[list[_Item], Future[Raw] | None]] = deque()

            def drain(keep: int) -> None:
                while len(inflight) > keep:
                    done, fut = inflight.popleft()
                    self._flush(done, pending, failed, store, summary, notify, infer, fut)

            try:
                while True:
                    msg = q.get()
                    if msg is _END:
                        if batch:
                            inflight.append((batch, infer.submit(batch)))
                        drain(0)
                        break
                    if isinstance(msg, _Fail):
                        self._quarantine(store, summary, msg.source, msg.doc_id, msg.error, notify)
                        continue
                    if isinstance(msg, _Skip):
                        summary.skipped += 1
                        notify("skip", {"source": msg.source, "doc_id": msg.doc_id})
                        continue
                    batch.append(msg)
                    if len(batch) >= self.opts.batch_size or msg.last or msg.error:
                        inflight.append((batch, infer.submit(batch)))
                        batch = []
                        drain(infer.workers)  # one more than the workers queued, so none idles
            finally:
                stop.set()
                infer.close()
                producer.join(timeout=5)
            # results first, then the summary that describes them: a summary never promises
            # documents the folder does not hold
            store.commit()
            if self.opts.force:
                store.compact()
            summary.seconds = time.perf_counter() - t0
            store.write_summary(summary)
        notify("end", summary.to_dict())
        return summary

    # -- internals -----------------------------------------------------------------------------
    def _flush(
        self,
        batch: list[_Item],
        pending: dict[str, list[PageResult]],
        failed: set[str],
        store: ResultStore,
        summary: Summary,
        notify: ProgressFn,
        infer: _Inference,
        inferred: Future[Raw] | None = None,
    ) -> None:
        ok = [it for it in batch if it.error is None and it.prepared is not None]
        scorer = self.scorer
        try:
            raw, second_raw = inferred.result() if inferred is not None else (None, None)
            with decoding_floor(self.detector, scorer) as thresholds:  # lower domains', near misses
                dets = infer.detections([it.prepared for it in ok if it.prepared is not None], raw)
                second_ok = [it for it in ok if it.second is not None]
                second_dets = infer.detections(
                    [it.second for it in second_ok if it.second is not None], second_raw
                )
        except InferenceUnavailable as exc:  # a remote model that did not answer: never a silent loss
            err = f"{exc.server} did not answer ({exc.reason})"
            for it in batch:
                it.error = it.error or DocumentError(it.doc.source, err, "inference_unavailable")
            dets = second_dets = []
            ok = second_ok = []
            thresholds = self.detector.thresholds
        by_item = {id(it): d for it, d in zip(ok, dets, strict=True)}
        second_by_item = {id(it): d for it, d in zip(second_ok, second_dets, strict=True)}
        for it in batch:
            key = it.doc.doc_id
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
            mapped = [Detection(d.label, d.score, view.to_page(d.xyxy)) for d in by_item[id(it)]]
            threshold = thresholds.of(view.page.domain)  # the page's domain's operating threshold
            result = PageResult(
                page=view.page,
                detections=kept(mapped, threshold),  # what a run at that threshold keeps
                model_version=self.detector.model_version,
                source=it.doc.source,
            )
            if scorer is not None:
                second = second_by_item.get(id(it))
                second_mapped = None
                if second is not None:
                    second_mapped = [Detection(d.label, d.score, view.to_page(d.xyxy)) for d in second]
                result.uncertainty, result.reasons = scorer.score(mapped, threshold, second_mapped, it.text)
            pending.setdefault(key, []).append(result)
            if it.last:
                self._finish(it.doc, pending.pop(key), store, summary, notify)

    def _finish(
        self,
        doc: OpenedDocument,
        results: list[PageResult],
        store: ResultStore,
        summary: Summary,
        notify: ProgressFn,
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
        notify(
            "document",
            {
                "source": doc.source,
                "doc_id": doc.doc_id,
                "pages": len(results),
                "detections": sum(len(r.detections) for r in results),
            },
        )

    def _quarantine(
        self,
        store: ResultStore,
        summary: Summary,
        source: str,
        doc_id: str | None,
        err: DocumentError,
        notify: ProgressFn,
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
        from inkloop.detection import outputs

        stem = f"{outputs.safe_stem(doc.source)}-{doc.doc_id[:8]}"
        for r in results:
            if not (o.annotate_png or (o.crops and r.detections)):
                continue
            with PDF_LOCK:
                img = doc.render_for_people(r.page.index)
            if o.annotate_png:
                outputs.write_png(
                    outputs.draw_boxes(img, r.detections),
                    storage.join(self.out_dir, "annotated", f"{stem}-p{r.page.index + 1}.png"),
                )
            if o.crops:
                for k, d in enumerate(r.detections):
                    outputs.write_png(
                        outputs.crop(img, d),
                        storage.join(self.out_dir, "crops", f"{stem}-p{r.page.index + 1}-{k + 1}.png"),
                    )
        if o.annotate_pdf and doc.kind == "pdf":
            with PDF_LOCK:
                dst = storage.join(self.out_dir, "annotated", f"{stem}.pdf")
                outputs.annotate_pdf(doc.path, results, dst)
