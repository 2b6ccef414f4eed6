"""The whole loop in real Airflow with a real Label Studio server and FiftyOne's real database.

documents in → inkloop_detect (registry://…@production, v1) → inkloop_review_sync (push; a
"reviewer" thread annotates the tasks through the Label Studio API while the deferrable sensor
waits; pull; curate in FiftyOne; export) → inkloop_retrain (tiny settings; export; gate; promote
v2) → inkloop_detect again reports the new model_version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from airflow_env import AirflowCLI, migrate
from inkloop.convert.labelstudio import to_labelstudio
from inkloop.convert.yolo import from_yolo, read_labels

pytestmark = [pytest.mark.airflow, pytest.mark.labelstudio, pytest.mark.fiftyone, pytest.mark.slow]

PROJECT = "e2e loop"


def make_inbox(pages_dir: Path, inbox: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Single-page PNG documents and their true boxes, by file name.

    Each fixture page is placed on larger white sheets at different offsets and scales, so the
    pages are distinct documents (not near-duplicates, which curation would keep in one split) and
    the frozen test split of this small set is not empty.
    """
    inbox.mkdir(parents=True)
    truth: dict[str, list[tuple[float, float, float, float]]] = {}
    layouts = [(0.0, 0.0, 1.0), (0.35, 0.05, 0.8), (0.05, 0.4, 0.7), (0.3, 0.3, 0.9), (0.5, 0.1, 0.6)]
    for src in sorted(pages_dir.glob("*.png")) + sorted(pages_dir.glob("*.jpg")):
        im = Image.open(src).convert("RGB")
        labels = read_labels(src.with_suffix(".txt").read_text())
        for k, (ox, oy, scale) in enumerate(layouts):
            w, h = round(im.width * scale), round(im.height * scale)
            sheet = Image.new("RGB", (round(im.width * 1.6), round(im.height * 1.5)), "white")
            x0, y0 = round(ox * im.width), round(oy * im.height)
            sheet.paste(im.resize((w, h)), (x0, y0))
            name = f"{src.stem[:20]}-{k}.png"
            sheet.save(inbox / name)
            truth[name] = [
                (b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0) for b in (from_yolo(c, w, h) for _, c in labels)
            ]
    return truth


def reviewer(url: str, token: str, truth: dict, stop: threading.Event, done: list[int]) -> None:
    """Annotate every task of the project with the true boxes, as a person would in the UI."""
    from inkloop.review.labelstudio import LabelStudioReview

    client = LabelStudioReview(url, token, project_title=PROJECT)
    seen: set[int] = set()
    while not stop.is_set():
        try:
            for t in client.iter_tasks():
                if t.id in seen or t.annotations:
                    continue
                name = Path(t.data["source"]).name
                w, h = t.data["page_width"], t.data["page_height"]
                result = []
                for box in truth.get(name, []):
                    v = to_labelstudio(box, w, h)
                    v["rectanglelabels"] = ["signature"]
                    result.append(
                        {
                            "from_name": "label",
                            "to_name": "image",
                            "type": "rectanglelabels",
                            "original_width": w,
                            "original_height": h,
                            "value": v,
                        }
                    )
                client.client.annotations.create(id=t.id, result=result)
                seen.add(t.id)
                done.append(t.id)
        except Exception:  # the project may not exist yet
            pass
        stop.wait(1.0)


def test_full_loop(tmp_path, pages_dir, labelstudio, request):
    from inkloop.models.registry import Registry
    from inkloop.models.resolve import resolve_model

    data = tmp_path / "data"
    inbox = data / "inbox"
    truth = make_inbox(pages_dir, inbox)
    registry = data / "registry"
    bundled = resolve_model(None)
    reg = Registry(str(registry))
    v1 = reg.register(
        "signature-detector", bundled.path, bundled.card, pt_path=bundled.path.with_name("model.pt")
    )
    reg.promote("signature-detector", v1)

    env = migrate(tmp_path / "airflow", data)
    env.update(
        INKLOOP_REGISTRY=str(registry),
        INKLOOP_REVIEW_POLL_SECONDS="2",  # the reviewer thread answers in seconds, not minutes
        # the suite's one FiftyOne database: FiftyOne attaches to a running one of the same user
        FIFTYONE_DATABASE_DIR=os.environ["FIFTYONE_DATABASE_DIR"],
        AIRFLOW_CONN_LABELSTUDIO_DEFAULT=json.dumps(
            {"conn_type": "labelstudio", "host": labelstudio.url, "password": labelstudio.token}
        ),
    )

    airflow = AirflowCLI(env)  # one Airflow process for the four runs
    request.addfinalizer(airflow.close)

    def dags_test(dag_id: str, conf: dict) -> str:
        t0 = time.monotonic()
        p = airflow.run("dags", "test", dag_id, "-c", json.dumps(conf), timeout=1800)
        print(f"{dag_id}: {time.monotonic() - t0:.0f} s")  # where the loop's time goes (-rP)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out[-6000:]
        assert "state=success" in out, out[-6000:]
        assert labelstudio.token not in out  # never in logs
        return out

    # 1. detect with the production model (v1), routing on
    results = data / "results"
    dags_test(
        "inkloop_detect",
        {
            "inbox": str(inbox),
            "out_dir": str(results),
            "model": "registry://signature-detector@production",
            "route": True,
        },
    )
    first = [json.loads(x) for x in (results / "results.jsonl").read_text().splitlines()]
    assert len(first) == len(truth) and {r["model_version"] for r in first} == {"signature-detector@v1"}

    # 2. review sync: push every page, a reviewer annotates while the sensor waits, pull, curate
    stop, done = threading.Event(), []
    th = threading.Thread(
        target=reviewer, args=(labelstudio.url, labelstudio.token, truth, stop, done), daemon=True
    )
    th.start()
    try:
        dags_test(
            "inkloop_review_sync",
            {
                "results_dir": str(results),
                "project": PROJECT,
                "budget": 1.0,
                "min_uncertainty": 0.0,
                "min_reviewed": len(truth),
                "export_dir": str(data / "datasets"),
                "dataset": f"e2e-{os.getpid()}",
            },
        )
    finally:
        stop.set()
        th.join(timeout=10)
    assert len(done) == len(truth)
    reviews = [json.loads(x) for x in (results / "reviews.jsonl").read_text().splitlines()]
    assert len(reviews) == len(truth) and all(r["status"] == "submitted" for r in reviews)
    exports = list((data / "datasets").glob("*/data.yaml"))
    assert len(exports) == 1
    manifest = json.loads((exports[0].parent / "manifest.json").read_text())
    assert manifest["data_version"].startswith("sha256:")
    # the exported YOLO labels are the reviewer's boxes, within 0.5 px
    by_stem = {re.sub(r"[^A-Za-z0-9._-]+", "_", r["page_key"]): r for r in first}
    exported = 0
    for lbl in (exports[0].parent / "labels").glob("*/*.txt"):
        r = by_stem[lbl.stem]
        w, h = r["page"]["width"], r["page"]["height"]
        got = sorted(from_yolo(c, w, h) for _, c in read_labels(lbl.read_text()))
        want = sorted(truth[Path(r["source"]).name])
        assert len(got) == len(want), lbl
        for a, b in zip(got, want, strict=True):
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 0.5, (lbl, a, b)
        exported += 1
    assert exported >= 0.8 * len(truth)  # near-duplicates of test pages may be excluded

    # 3. retrain (tiny), export, gate with a permissive policy, promote v2
    t0 = time.time()
    dags_test(
        "inkloop_retrain",
        {
            "data": str(data / "datasets"),
            "registry": str(registry),
            "epochs": 1,
            "imgsz": 160,  # the loop's plumbing is under test, not the model: a small, fast one
            "margin": -1.0,
            "parent_weight": 0.5,  # the export averages the fine-tune with production (its parent)
            "runs_dir": str(data / "runs"),
            "gate_policy": {"max_recall_drop": 1.0, "max_domain_regression": None, "max_latency_ratio": None},
        },
    )
    gates = {p.parent.name: json.loads(p.read_text()) for p in registry.rglob("gate.json")}
    assert Registry(str(registry)).alias("signature-detector", "production") == "v2", (
        time.time() - t0,
        gates,
    )
    soup = Registry(str(registry)).show("signature-detector", "v2").recipe["soup"]
    assert [i["weight"] for i in soup["of"]] == [0.5, 0.5]

    # 4. the next detection run uses the promoted model
    shutil.rmtree(results)
    dags_test(
        "inkloop_detect",
        {"inbox": str(inbox), "out_dir": str(results), "model": "registry://signature-detector@production"},
    )
    again = [json.loads(x) for x in (results / "results.jsonl").read_text().splitlines()]
    assert {r["model_version"] for r in again} == {"signature-detector@v2"}
