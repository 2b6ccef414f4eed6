"""``inkloop demo``: try a model in the browser (Gradio, on 127.0.0.1, offline).

Drop a PDF, TIFF or image (or click one of the sample documents), pick a model (bundled, a
registry alias, a ``triton://`` server): the document's signing verdict comes back with its
evidence (the signing places found, which of them carry ink, form fields, digital signatures),
each page with its boxes and scores, a table of the detections, and downloads (annotated PDF or
pages, crops, results JSON). A score-threshold slider re-filters the boxes and the verdict
without running the model again.

The work is ``inkloop detect``'s: :class:`inkloop.detection.pipeline.DetectionRun` with its limits
(a big or broken file gets the same quarantine reason), then
:func:`inkloop.verdict.derive_verdicts` (the verdict ``inkloop detect`` writes). Why the slider
needs no second inference: the model is decoded once at :data:`SCORE_FLOOR`; greedy NMS visits
boxes by descending score, so keeping the boxes above a threshold gives exactly what a run at that
threshold gives (:func:`inkloop.detection.scoring.decoding_floor` relies on the same fact).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

#: Set in the app's process before Gradio, huggingface_hub or onnxruntime are imported: no
#: analytics, no hub lookups, no onnxruntime telemetry (they phone home otherwise; docs/privacy.md).
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
API_NAME = "detect"
THRESHOLD_API_NAME = "threshold"
COLUMNS = ["page", "label", "score", "x0", "y0", "x1", "y1", "place"]
FILE_TYPES = [".pdf", ".tif", ".tiff", ".png", ".jpg", ".jpeg"]
DEFAULT_MODELS = ["bundled", "registry://signature-detector@production"]
#: The lowest threshold the slider offers; the model is decoded down to it once per document.
SCORE_FLOOR = 0.05
#: At most this many files of an examples folder are offered (a folder is not a corpus).
MAX_EXAMPLES = 24

#: What each verdict means, for people who have not read docs/verdict.md.
VERDICT_TEXT = {
    "signed": "every signing place carries a signature (or, with no place found, there is ink)",
    "partially_signed": "some signing places carry a signature, others are empty",
    "unsigned": "the document asks for a signature and every place is empty",
    "e_signed": "signed electronically (a valid digital signature or an e-signing service's mark)",
    "no_signature_expected": "no signing place and no ink",
    "needs_review": "the evidence is weak or conflicting: a person should look",
}
PLACE_STATUS_TEXT = {
    "signed_ink": "signed (ink)",
    "signed_digital": "signed (digital signature)",
    "empty": "empty",
    "uncertain": "uncertain",
}


def set_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


def checkout_examples() -> Path | None:
    """The sample documents of a source checkout (``tests/fixtures/documents``), if inkloop runs
    from one; an installed wheel has none (``inkloop demo --examples DIR`` names a folder)."""
    folder = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "documents"
    return folder if folder.is_dir() else None


def example_files(folder: Path | None) -> list[Path]:
    """The documents of ``folder`` the demo can open, sorted by name (at most :data:`MAX_EXAMPLES`)."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise ValueError(f"examples folder {folder}: not a folder")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FILE_TYPES and p.name[0] != "."
    )
    return files[:MAX_EXAMPLES]


class Demo:
    """The detection and the verdict behind the page; detectors are loaded once per model reference.

    Each detection is a *run* folder (the pipeline's outputs at :data:`SCORE_FLOOR`, the source's
    copy, the clean page images); each threshold asked of it is a *view* folder inside it (the
    kept boxes, the verdict, the annotated pages and downloads), computed once.
    """

    def __init__(self, work: Path | None = None, max_pages: int = 50) -> None:
        from inkloop.documents.limits import Limits

        self.work = work or Path(tempfile.mkdtemp(prefix="inkloop-demo-"))
        self.limits = Limits(max_pages=max_pages)
        self._detectors: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._views = threading.Lock()

    def detector(self, model: str) -> Any:
        """The model's detector, decoding down to :data:`SCORE_FLOOR` (the slider filters above)."""
        from inkloop.detection.detector import Detector

        key = (model or "bundled").strip()
        with self._lock:
            if key not in self._detectors:
                self._detectors[key] = Detector(None if key == "bundled" else key, conf=SCORE_FLOOR)
            return self._detectors[key]

    def detect(
        self, path: str | None, model: str, threshold: float | None = None
    ) -> tuple[list[Any], list[list[Any]], list[str], str, str, str]:
        """(annotated pages with captions, detection rows, files to download, a status line, the
        verdict with its evidence, the run's name for :meth:`view`)."""
        from inkloop.detection.pipeline import DetectionRun, DetectOptions
        from inkloop.models.references import ModelError

        if not path:
            return [], [], [], "Drop a PDF, TIFF or image first, or click a sample document.", "", ""
        try:
            det = self.detector(model)
        except ModelError as exc:
            return [], [], [], f"**Model error:** {exc}", "", ""
        run = Path(tempfile.mkdtemp(prefix="run-", dir=self.work))
        src = run / "input" / Path(path).name  # the upload's own name, as a CLI run would show it
        src.parent.mkdir(parents=True)
        shutil.copyfile(path, src)
        opts = DetectOptions(limits=self.limits, force=True)
        summary = DetectionRun(run, opts, detector=det).run([str(src)])
        quarantine = _jsonl(run / "quarantine.jsonl")
        if quarantine:
            q = quarantine[0]
            # the server's folders are not the user's business
            reason = q["reason"].replace(str(src), src.name)
            return [], [], [], f"**Quarantined** {src.name}: {reason} ({q['error']})", "", ""
        _render_pages(src, run, self.limits, opts.people_dpi)
        operating = det.card.conf_threshold
        by_domain = det.card.domain_thresholds
        (run / "run.json").write_text(
            json.dumps(
                {
                    "source": src.name,
                    "model_version": summary.model_version,
                    "operating": operating,
                    "domain_thresholds": by_domain,
                }
            )
        )
        gallery, rows, files, verdict = self.view(run.name, operating if threshold is None else threshold)
        status = (
            f"{src.name}: {summary.pages} page(s), model {summary.model_version} "
            f"(its operating threshold {operating:.2f}"
            + "".join(f"; {d} pages {v:.2f}" for d, v in sorted(by_domain.items()))
            + ")"
        )
        return gallery, rows, files, status, verdict, run.name

    def view(self, run_name: str, threshold: float) -> tuple[list[Any], list[list[Any]], list[str], str]:
        """The run's boxes above ``threshold`` and the verdict they give: (annotated pages, detection
        rows, downloads, the verdict with its evidence). No inference: the run's boxes are filtered."""
        from inkloop.detection import outputs
        from inkloop.detection.results import read_results
        from inkloop.detection.scoring import kept
        from inkloop.models.references import Thresholds
        from inkloop.verdict import VerdictConfig, derive_verdicts

        run = self._run(run_name)
        if run is None:
            return [], [], [], "Detect a document first."
        t = min(0.99, max(SCORE_FLOOR, round(float(threshold), 2)))
        meta = json.loads((run / "run.json").read_text())
        view = run / f"view-{t:.2f}"
        with self._views:  # one computation per view, even when two events ask at once
            if not (view / "view.json").is_file():
                pages = sorted(read_results(run), key=lambda r: r.page.index)
                # at the card's own value, each page is cut where `inkloop detect` cuts it (its
                # domain's threshold); anywhere else the slider's value holds for every page
                at_card = abs(t - meta["operating"]) < 1e-9
                cut = Thresholds(t, meta.get("domain_thresholds", {}) if at_card else {})
                pages = [replace(r, detections=kept(r.detections, cut.of(r.page.domain))) for r in pages]
                view.mkdir(exist_ok=True)
                (view / "results.jsonl").write_text(
                    "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in pages)
                )
                # the verdict `inkloop detect` writes, at this threshold: its ambiguous band starts here
                (verdict,) = derive_verdicts(view, VerdictConfig.at(cut), write=False)
                stem = f"{outputs.safe_stem(meta['source'])}-t{t:.2f}"
                for r in pages:
                    img = _read_png(run / "pages" / f"p{r.page.index + 1}.png")
                    outputs.write_png(
                        outputs.draw_boxes(img, r.detections), view / f"{stem}-p{r.page.index + 1}.png"
                    )
                    for k, d in enumerate(r.detections):
                        outputs.write_png(
                            outputs.crop(img, d), view / "crops" / f"{stem}-p{r.page.index + 1}-{k + 1}.png"
                        )
                if (view / "crops").is_dir():
                    shutil.make_archive(str(view / "crops"), "zip", view / "crops")
                src = run / "input" / meta["source"]
                if src.suffix.lower() == ".pdf":
                    outputs.annotate_pdf(src, pages, view / f"{stem}.pdf")
                (view / "results.json").write_text(
                    json.dumps(
                        {
                            "threshold": t,
                            "pages": [r.to_dict() for r in pages],
                            "verdict": verdict.to_dict(),
                        },
                        indent=2,
                        ensure_ascii=False,
                    )
                )
                (view / "view.json").write_text(json.dumps({"stem": stem, "pages": len(pages)}))
        stem = json.loads((view / "view.json").read_text())["stem"]
        record = json.loads((view / "results.json").read_text())
        pages, verdict_d = record["pages"], record["verdict"]
        places = {(i["page"], tuple(i["xyxy"])): _ink_where(i) for i in verdict_d["ink"]}
        rows = [
            [
                p["page"]["index"] + 1,
                d["label"],
                round(d["score"], 4),
                *(round(v, 1) for v in d["xyxy"]),
                places.get((p["page"]["index"], tuple(round(v, 2) for v in d["xyxy"])), ""),
            ]
            for p in pages
            for d in p["detections"]
        ]
        gallery = [
            (
                str(view / f"{stem}-p{p['page']['index'] + 1}.png"),
                f"page {p['page']['index'] + 1}: {len(p['detections'])} box(es)",
            )
            for p in pages
        ]
        files = [str(view / "results.json"), *map(str, sorted(view.glob("*.pdf")))]
        if (view / "crops.zip").is_file():
            files.append(str(view / "crops.zip"))
        return gallery, rows, files, verdict_markdown(verdict_d, t, meta["operating"])

    def _run(self, name: str) -> Path | None:
        """A run folder of this demo by its name (never a path: the name comes from the page)."""
        if not name or not re.fullmatch(r"run-[A-Za-z0-9_]+", name):
            return None
        run = self.work / name
        return run if (run / "run.json").is_file() else None


def _render_pages(src: Path, run: Path, limits: Any, dpi: float) -> None:
    """The run's pages at reading resolution, clean, once: every view draws its boxes on them."""
    from inkloop.detection import outputs
    from inkloop.detection.results import read_results
    from inkloop.documents.opening import open_document

    with open_document(src, limits, dpi) as doc:
        for r in read_results(run):
            outputs.write_png(doc.render_for_people(r.page.index), run / "pages" / f"p{r.page.index + 1}.png")


def _read_png(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _ink_where(ink: dict[str, Any]) -> str:
    if ink.get("place_id"):
        return ink["place_id"]
    if ink.get("near"):
        return f"near {ink['near']}"
    return ""


def verdict_markdown(v: dict[str, Any], threshold: float, operating: float) -> str:
    """A verdict record (``verdicts.jsonl``'s layout) as a short page for people: the verdict, why,
    and every piece of evidence it rests on."""
    name = v["verdict"]
    label = name.replace("e_signed", "e-signed").replace("_", " ")
    out = [f"## Verdict: {label}", f"*{VERDICT_TEXT.get(name, '')}*", ""]
    out += [f"- {r}" for r in v["reasons"]]
    places = v["places"]
    ink = v["ink"]
    out += ["", f"**Signing places found: {len(places)}**"]
    if places:
        out += ["", "| place | page | found as | status | ink on it |", "|---|---|---|---|---|"]
        for p in places:
            on = [f"{i['score']:.2f}" for i in ink if i.get("place_id") == p["place_id"]]
            found = f"field `{p['field_name']}`" if p["kind"] == "field" else f"label “{p['text']}”"
            page = "–" if p["page"] is None else p["page"] + 1
            status = PLACE_STATUS_TEXT.get(p["status"], p["status"])
            if p["reasons"]:
                status += f" ({'; '.join(p['reasons'])})"
            out.append(f"| {p['place_id']} | {page} | {found} | {status} | {', '.join(on) or 'none'} |")
    on_place = sum(1 for i in ink if i.get("place_id"))
    ambiguous = sum(1 for i in ink if i.get("ambiguous"))
    out += [
        "",
        f"**Ink (boxes scoring above {threshold:.2f}): {len(ink)}**: {on_place} on a signing place, "
        f"{len(ink) - on_place} elsewhere; {ambiguous} ambiguous (below "
        f"{threshold + float(v['config'].get('band', 0)):.2f}, they never sign a place alone)",
    ]
    sigs = v["digital_signatures"]
    if sigs:
        out += ["", f"**Digital signatures: {len(sigs)}**"]
        for s in sigs:
            who = f", signer {s['signer']}" if s.get("signer") else ""
            when = f", signed {s['signed_at']}" if s.get("signed_at") else ""
            out.append(f"- field `{s['field_name']}`: {s['integrity'].replace('_', ' ')}{who}{when}")
    else:
        out += ["", "**Digital signatures:** none"]
    if v["marks"]:
        vendors = sorted({m["vendor"] for m in v["marks"]})
        out += ["", f"**E-signing service marks:** {', '.join(vendors)}"]
    note = " (the model's operating threshold)" if abs(threshold - operating) < 1e-9 else ""
    out += ["", f"threshold {threshold:.2f}{note} · model {v['model_version']}"]
    return "\n".join(out)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def operating_threshold(model: str) -> float:
    """The first model's operating threshold for the slider's start (the bundled card's when the
    model is remote or cannot be resolved now: the status line names the right one later)."""
    from inkloop.models.references import ModelError
    from inkloop.models.resolve import resolve_model

    try:
        ref = resolve_model(None if model in ("bundled", "") or "://" in model else model)
    except ModelError:
        ref = resolve_model(None)
    return float(ref.card.conf_threshold)


def build_app(
    models: list[str] | None = None, demo: Demo | None = None, examples: list[Path] | None = None
) -> Any:
    set_offline()
    import gradio as gr

    demo = demo or Demo()
    choices = list(dict.fromkeys([*(models or []), *DEFAULT_MODELS]))
    with gr.Blocks(title="inkloop: signature detection") as app:
        gr.Markdown(
            "# inkloop: is this document signed?\nDrop a PDF, TIFF or image, or click a sample "
            "document; pick a model; move the threshold to see which boxes (and which verdict) it keeps."
        )
        with gr.Row():
            file = gr.File(label="document", file_types=FILE_TYPES, type="filepath")
            with gr.Column():
                model = gr.Dropdown(choices, value=choices[0], allow_custom_value=True, label="model")
                threshold = gr.Slider(
                    SCORE_FLOOR,
                    0.95,
                    value=operating_threshold(choices[0]),
                    step=0.01,
                    label="score threshold",
                    info="boxes scoring above it count; the verdict follows (no new inference)",
                )
        # outputs first (not yet shown): the sample documents above them need to name them
        status = gr.Markdown(render=False)
        run = gr.State("")
        verdict = gr.Markdown(elem_id="verdict", render=False)
        gallery = gr.Gallery(
            label="pages", columns=2, format="png", object_fit="contain", height=720, render=False
        )
        table = gr.Dataframe(headers=COLUMNS, label="detections", interactive=False, render=False)
        downloads = gr.File(label="downloads", file_count="multiple", render=False)
        outputs = [gallery, table, downloads, status, verdict, run]
        if examples:
            gr.Examples(
                [[str(p), None, None] for p in examples],
                inputs=[file, model, threshold],
                outputs=outputs,
                fn=demo.detect,
                run_on_click=True,
                cache_examples=False,
                example_labels=[p.name for p in examples],
                label="sample documents (one click: detect with the model and threshold above)",
                examples_per_page=MAX_EXAMPLES,
            )
        button = gr.Button("Detect", variant="primary")
        status.render()
        with gr.Row():
            with gr.Column(scale=1):
                verdict.render()
            with gr.Column(scale=1):
                gallery.render()
        table.render()
        downloads.render()
        button.click(demo.detect, [file, model, threshold], outputs, api_name=API_NAME)
        threshold.release(
            demo.view, [run, threshold], [gallery, table, downloads, verdict], api_name=THRESHOLD_API_NAME
        )
    return app


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # Gradio closes its server on it, as on Ctrl-C; our cleanup then runs


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    models: list[str] | None = None,
    examples: Path | None = None,
) -> None:
    """Serve the demo until Ctrl-C or SIGTERM. Its scratch folder (each run's outputs, and Gradio's
    copies of uploads and downloads unless ``GRADIO_TEMP_DIR`` is set) is removed when it stops:
    a demo leaves nothing in /tmp. ``examples``: a folder of sample documents offered as one-click
    examples (read in place, never written)."""
    files = example_files(examples)
    with tempfile.TemporaryDirectory(prefix="inkloop-demo-") as tmp:
        work = Path(tmp)
        (work / "runs").mkdir()
        os.environ.setdefault("GRADIO_TEMP_DIR", str(work / "gradio"))  # read when gradio is imported
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            app = build_app(models, Demo(work / "runs"), files)
            app.launch(
                server_name=host,
                server_port=port,
                share=False,
                inbrowser=False,
                show_error=True,
                allowed_paths=[str(examples)] if files else None,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)
