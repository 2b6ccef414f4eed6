"""``inkloop demo``: try a model in the browser (Gradio, on 127.0.0.1, offline).

Drop a PDF, TIFF or image, pick a model (bundled, a registry alias, a ``triton://`` server): each
page comes back with its boxes and scores, a table of the detections, and downloads (annotated PDF
or pages, crops, results JSON). The work is :func:`inkloop.detection.pipeline.detect`'s, with its
limits, so a big or broken file gets the same quarantine reason as ``inkloop detect``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

#: Set in the app's process before Gradio, huggingface_hub or onnxruntime are imported: no
#: analytics, no hub lookups, no onnxruntime telemetry (PLATFORM_NOTES: they phone home otherwise).
OFFLINE_ENV = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ORT_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
API_NAME = "detect"
COLUMNS = ["page", "label", "score", "x0", "y0", "x1", "y1"]
FILE_TYPES = [".pdf", ".tif", ".tiff", ".png", ".jpg", ".jpeg"]
DEFAULT_MODELS = ["bundled", "registry://signature-detector@production"]


def set_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


class Demo:
    """The detection behind the page; detectors are loaded once per model reference."""

    def __init__(self, work: Path | None = None, max_pages: int = 50) -> None:
        from inkloop.documents.limits import Limits

        self.work = work or Path(tempfile.mkdtemp(prefix="inkloop-demo-"))
        self.limits = Limits(max_pages=max_pages)
        self._detectors: dict[str, Any] = {}
        self._lock = threading.Lock()

    def detector(self, model: str) -> Any:
        from inkloop.detection.detector import Detector

        key = (model or "bundled").strip()
        with self._lock:
            if key not in self._detectors:
                self._detectors[key] = Detector(None if key == "bundled" else key)
            return self._detectors[key]

    def detect(self, path: str | None, model: str) -> tuple[list[Any], list[list[Any]], list[str], str]:
        """(annotated pages with captions, detection rows, files to download, a status line)."""
        from inkloop.detection.pipeline import DetectionRun, DetectOptions
        from inkloop.models.references import ModelError

        if not path:
            return [], [], [], "Drop a PDF, TIFF or image first."
        try:
            det = self.detector(model)
        except ModelError as exc:
            return [], [], [], f"**Model error:** {exc}"
        out = Path(tempfile.mkdtemp(prefix="run-", dir=self.work))
        src = out / "input" / Path(path).name  # the upload's own name, as a CLI run would show it
        src.parent.mkdir(parents=True)
        shutil.copyfile(path, src)
        opts = DetectOptions(annotate_png=True, annotate_pdf=True, crops=True, limits=self.limits, force=True)
        summary = DetectionRun(out, opts, detector=det).run([str(src)])
        quarantine = _jsonl(out / "quarantine.jsonl")
        if quarantine:
            q = quarantine[0]
            reason = q["reason"].replace(
                str(src), src.name
            )  # the server's folders are not the user's business
            return [], [], [], f"**Quarantined** {src.name}: {reason} ({q['error']})"
        pages = _jsonl(out / "results.jsonl")
        rows = [
            [p["page"]["index"] + 1, d["label"], round(d["score"], 4), *(round(v, 1) for v in d["xyxy"])]
            for p in pages
            for d in p["detections"]
        ]
        gallery = [
            (str(png), f"page {i + 1}: {len(p['detections'])} detection(s)")
            for i, (png, p) in enumerate(
                zip(sorted((out / "annotated").glob("*.png"), key=_page_no), pages, strict=True)
            )
        ]
        results = out / "results.json"
        results.write_text(json.dumps({"summary": summary.to_dict(), "pages": pages}, indent=2))
        files = [str(results), *map(str, (out / "annotated").glob("*.pdf"))]
        crops = out / "crops"
        if crops.is_dir() and any(crops.iterdir()):
            files.append(shutil.make_archive(str(out / "crops"), "zip", crops))
        status = (
            f"{src.name}: {summary.pages} page(s), {summary.detections} detection(s), "
            f"model {det.model_version}"
        )
        return gallery, rows, files, status


def _page_no(path: Path) -> int:
    return int(path.stem.rsplit("-p", 1)[-1])


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build_app(models: list[str] | None = None, demo: Demo | None = None) -> Any:
    set_offline()
    import gradio as gr

    demo = demo or Demo()
    choices = list(dict.fromkeys([*(models or []), *DEFAULT_MODELS]))
    with gr.Blocks(title="inkloop: signature detection") as app:
        gr.Markdown("# inkloop: find handwritten signatures\nDrop a PDF, TIFF or image; pick a model.")
        with gr.Row():
            file = gr.File(
                label="document",
                file_types=[".pdf", ".tif", ".tiff", ".png", ".jpg", ".jpeg"],
                type="filepath",
            )
            model = gr.Dropdown(choices, value=choices[0], allow_custom_value=True, label="model")
        button = gr.Button("Detect", variant="primary")
        status = gr.Markdown()
        gallery = gr.Gallery(label="pages", columns=2, format="png")
        table = gr.Dataframe(headers=COLUMNS, label="detections", interactive=False)
        downloads = gr.File(label="downloads", file_count="multiple")
        button.click(demo.detect, [file, model], [gallery, table, downloads, status], api_name=API_NAME)
    return app


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # Gradio closes its server on it, as on Ctrl-C; our cleanup then runs


def launch(host: str = "127.0.0.1", port: int = 7860, models: list[str] | None = None) -> None:
    """Serve the demo until Ctrl-C or SIGTERM. Its scratch folder (each run's outputs, and Gradio's
    copies of uploads and downloads unless ``GRADIO_TEMP_DIR`` is set) is removed when it stops:
    a demo leaves nothing in /tmp."""
    with tempfile.TemporaryDirectory(prefix="inkloop-demo-") as tmp:
        work = Path(tmp)
        (work / "runs").mkdir()
        os.environ.setdefault("GRADIO_TEMP_DIR", str(work / "gradio"))  # read when gradio is imported
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            app = build_app(models, Demo(work / "runs"))
            app.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
