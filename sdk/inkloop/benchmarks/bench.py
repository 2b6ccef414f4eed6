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

The corpus is built by :mod:`inkloop.benchmarks.corpus`, agreement is computed by
:mod:`inkloop.benchmarks.agreement`; this module measures.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inkloop.benchmarks.agreement import Alternative, PageBoxes, compare, pipeline_boxes
from inkloop.benchmarks.config import KINDS, BenchConfig
from inkloop.benchmarks.corpus import (
    Corpus,
    _signature_crop,
    build_corpus,
    fixture_pages,
    make_digital_pdf,
    make_images,
    make_scanned_pdf,
    scan_jpegs,
)

if TYPE_CHECKING:  # the pipeline loads in the measuring processes, not when the module is read
    from inkloop.detection.detector import Detector
    from inkloop.detection.pipeline import DetectionRun, DetectOptions
    from inkloop.models.references import ModelCard

#: Targets from the throughput issue (printed beside the measurements, never asserted in tests).
TARGET_VS_MODEL = 0.9


TARGET_VS_ALTERNATIVE = 1.5


TARGET_MEMORY_RATIO = 1.2


def _clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def pipeline_options(cfg: BenchConfig) -> DetectOptions:
    """The pipeline's options for the benchmark: its defaults unless the config overrides them.

    One operating threshold for every page, the card's ``conf_threshold``: the alternative the
    pipeline's boxes are compared with knows no page domains, so a card's lower threshold for
    born-digital pages would count as disagreement (the decoding cost is the same).
    """
    from inkloop.detection.pipeline import DetectOptions
    from inkloop.models.resolve import resolve_model

    conf = resolve_model(cfg.model).card.conf_threshold
    opts = DetectOptions(model=cfg.model, threads=cfg.threads, conf=conf)  # a fresh folder per run
    if cfg.batch_size:
        opts.batch_size = cfg.batch_size
    if cfg.workers:
        opts.inference_workers = cfg.workers
    return opts


def model_tensors(
    corpus: Corpus, kind: str, detector: Detector, prepare: Callable[[np.ndarray], Any], n: int
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


def pipeline_batch(detector: Detector, batch: int) -> int:
    """The batch the pipeline runs ``detector`` at (page by page on CPU backends): the bare
    model is timed the same way, so the ratio compares like with like."""
    from inkloop.detection.pipeline import infers_page_by_page

    return 1 if infers_page_by_page(detector) else batch


def bare_model(detector: Detector, prepared: Sequence[Any], batch: int, workers: int = 1) -> float:
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


def pipeline_run(run: DetectionRun, files: Sequence[Path], out_dir: Path) -> float:
    """Seconds for one :meth:`DetectionRun.run` over ``files`` into a fresh ``out_dir``."""
    shutil.rmtree(out_dir, ignore_errors=True)
    run.out_dir = os.fspath(out_dir)  # the run keeps its folder as a string (URLs stay URLs)
    return _clock(lambda: run.run([str(f) for f in files]))[0]


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


def discover_variants(
    cfg: BenchConfig, model_path: Path, card: ModelCard, work: Path
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


def _quantize_int8(model_path: Path, card: ModelCard, work: Path, cfg: BenchConfig) -> Path | str:
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
    card: ModelCard,
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


TRITON_PIPELINE, TRITON_BARE = "pipeline_triton", "triton_b1"


def request_overhead(local: Any, remote: Any, prepared: Sequence[Any], n: int = 40) -> dict[str, float]:
    """One page's forward pass, locally and through the server, called alternately ``n`` times on
    the same tensors: the extra milliseconds a request costs (serialisation, HTTP, the server's
    queue and Python backend). Alternating keeps other load on the machine out of the difference;
    the minimum is the least disturbed figure."""
    times: dict[str, list[float]] = {"local": [], "triton": []}
    for i in range(n):
        t = prepared[i % len(prepared)].tensor[None]  # float32 CHW (see _as_tensor)
        for name, det in (("local", local), ("triton", remote)):
            t0 = time.perf_counter()
            det.session.run(None, {det.input_name: t})
            times[name].append(1000 * (time.perf_counter() - t0))
    med = {k: statistics.median(v) for k, v in times.items()}
    low = {k: min(v) for k, v in times.items()}
    return {
        "requests": n,
        "median_ms_local": round(med["local"], 2),
        "median_ms_triton": round(med["triton"], 2),
        "min_ms_local": round(low["local"], 2),
        "min_ms_triton": round(low["triton"], 2),
        "overhead_ms_median": round(med["triton"] - med["local"], 2),
        "overhead_ms_min": round(low["triton"] - low["local"], 2),
    }


def served_vs_local(local_card: ModelCard, remote_run: DetectionRun) -> dict[str, Any]:
    """Whether the server serves the local model's weights (the cards' SHA-256): a ratio between two
    different models would measure the models, not the serving."""
    served = remote_run.detector.model.card
    same = bool(local_card.sha256) and served.sha256 == local_card.sha256
    return {
        "served_model": f"{served.name}@{served.model_version}",
        "served_sha256": served.sha256,
        "local_sha256": local_card.sha256,
        "same_model": same,
    }


def _remote_report(
    cfg: BenchConfig, timings: dict[str, dict[str, Any]], work: Path, same_model: dict[str, Any]
) -> dict[str, Any]:
    """Pipeline through the server vs local, the per-request overhead, and whether the detections
    are the same (they should be: only the forward pass moved)."""
    out: dict[str, Any] = {"ref": cfg.triton, **same_model}
    for kind in KINDS:
        t = timings[kind]
        local, remote = t["pipeline"], t[TRITON_PIPELINE]
        bare_local, bare_remote = t["model_b1"], t[TRITON_BARE]
        boxes = compare(
            pipeline_boxes(work / "out" / kind), pipeline_boxes(work / "out" / f"triton-{kind}"), 0.01, 0.0
        )
        out[kind] = {
            "pipeline_pages_per_second": local["pages_per_second"],
            "pipeline_triton_pages_per_second": remote["pages_per_second"],
            "ratio_triton_vs_local": round(remote["pages_per_second"] / local["pages_per_second"], 3),
            "request_ms_local": round(1000 * bare_local["median_seconds"] / bare_local["pages"], 2),
            "request_ms_triton": round(1000 * bare_remote["median_seconds"] / bare_remote["pages"], 2),
            "agreement": boxes,
        }
        row = out[kind]
        row["overhead_ms_per_request"] = round(row["request_ms_triton"] - row["request_ms_local"], 2)
    return out


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

        local_bare = list(bare)
        remote_run = None
        if cfg.triton:  # the same pipeline and bare model, inferring on the server
            say(f"connecting to {cfg.triton}")
            remote_run = DetectionRun(
                work / "out" / "triton", replace(pipeline_options(cfg), model=cfg.triton)
            )
            bare[TRITON_BARE] = (remote_run.detector, 1, 1)

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
            if remote_run is not None:
                contenders[(kind, TRITON_PIPELINE)] = (
                    lambda files=files, kind=kind: pipeline_run(
                        remote_run, files, work / "out" / f"triton-{kind}"
                    ),
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
            if remote_run is not None:
                pipeline_run(remote_run, warm[kind], work / "out" / f"warm-triton-{kind}")
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
        report["ratios"] = _ratios(timings, local_bare)
        if cfg.triton and remote_run is not None:
            report["triton"] = _remote_report(cfg, timings, work, served_vs_local(card, remote_run))
            say("per-request overhead: local and served forward passes, alternately")
            report["triton"]["request"] = request_overhead(plain, remote_run.detector, tensors["scanned"])

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
