"""Ship a trained run as the bundled model: export, measure on val, pick the threshold, write the card.

``python tools/bundle.py --run RUN_DIR --data DATASET [--version 1]`` is the last step of the
bundled model's recipe (``training.RECIPES["bundled-v1"]``). Everything the card states is
measured here, in one run:

- metrics on the dataset's val split with inkloop's evaluator (same algorithm as ultralytics val);
- the operating threshold, serving both kinds of users: the lowest threshold of a coarse grid
  (0.10, 0.15, …, 0.70) whose val precision is at least 0.85, so auto-accepted results hold
  fewer than one false box in six true ones while keeping all the recall that precision allows;
  the near misses below it are what routing's ambiguous band sends to people. Where no grid
  threshold reaches 0.85, the best-F1 one. The coarse grid keeps a threshold chosen on 81 pages
  from fitting them; the whole grid is on the card. With domains on val (scans and born-digital
  pages), the 0.85 floor holds in every domain for that threshold, which serves pages of any
  domain; and each domain whose own lowest threshold with precision ≥ 0.85 is lower gets it
  (the card's ``domain_thresholds``): scores are not calibrated alike on clean digital pages and
  on scans, and a page's domain is known before the model runs;
- the NMS IoU: overlapping boxes on one signature (a box inside a bigger one) cost a reviewer a
  deletion each, so of the IoUs within 1 point (0.01) of the best mAP50, the one leaving the fewest
  duplicate boxes (a kept box covering at least half of a higher-scoring kept box, or covered by
  it) at the operating threshold;
- CPU latency as a ratio to yolov8s at 640 (an untrained yolov8s has the same cost as a trained
  one), both timed with bare ``InferenceSession.run`` on the same machine in the same run,
  interleaved so machine noise hits both alike;
- the data version: the hash of every image and label file of the dataset.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.models.references import ModelCard, Preprocessing
from inkloop.models.resolve import resolve_model

GRID = tuple(round(0.1 + 0.05 * i, 2) for i in range(13))  # 0.10 … 0.70
NMS_IOUS = (0.7, 0.6, 0.5, 0.45)
MIN_PRECISION = 0.85  # auto-accepted results: fewer than one false box in six true ones
# Born-digital contracts are mostly accepted without a person (clean pages, verdicts straight from
# the boxes), so their floor is the product's born-digital target: at most one false box in ten.
DOMAIN_MIN_PRECISION = {"digital": 0.90}
TARGET_RECALL = 0.88  # recorded: whether the chosen threshold also keeps this much recall


def f_beta(p: float, r: float, beta: float = 2.0) -> float:
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r) if p + r > 0 else 0.0


def choose_operating_threshold(
    preds: list[Any], class_names: list[str], min_precision: float = MIN_PRECISION
) -> tuple[float, list[dict[str, float]], str]:
    """The operating threshold, the whole grid, and which rule chose it.

    The lowest grid threshold whose precision is ≥ ``min_precision`` (the most recall at that
    precision); if none reaches it, the best-F1 threshold (ties: the higher). ``preds``:
    :func:`inkloop.evaluation.evaluator.predict_dataset` output at ``EVAL_CONF``.
    """
    from inkloop.evaluation.evaluator import compute_metrics

    table = []
    for t in GRID:
        m, _ = compute_metrics(preds, class_names, t)
        row: dict[str, Any] = {
            "threshold": t,
            "precision": round(m.precision, 4),
            "recall": round(m.recall, 4),
            "f1": round(m.f1, 4),
            "f2": round(f_beta(m.precision, m.recall, 2.0), 4),
        }
        if m.domains:
            row["domains"] = {
                d: {"precision": round(v["precision"], 4), "recall": round(v["recall"], 4)}
                for d, v in sorted(m.domains.items())
            }
        table.append(row)

    def precise_enough(row: dict[str, Any]) -> bool:
        # With domains (scans and born-digital pages), the precision floor holds in each domain
        # (each at its own floor): pooled precision can hide a domain whose auto-accepted boxes
        # are mostly false.
        domains = row.get("domains", {})
        return (
            row["recall"] > 0
            and row["precision"] >= min_precision
            and all(meets_floor(v, d, min_precision) for d, v in domains.items())
        )

    precise = [row for row in table if precise_enough(row)]
    if precise:
        best = min(precise, key=lambda row: row["threshold"])
        where = f" in every domain ({_floors_text(min_precision)})" if "domains" in best else ""
        return float(best["threshold"]), table, f"lowest threshold with precision >= {min_precision}{where}"
    best = max(table, key=lambda row: (row["f1"], row["threshold"]))
    return float(best["threshold"]), table, f"best F1 (no threshold reaches precision {min_precision})"


def domain_floor(domain: str, min_precision: float = MIN_PRECISION) -> float:
    """The precision a domain's auto-accepted boxes must reach (``DOMAIN_MIN_PRECISION``, else
    ``min_precision``)."""
    return max(min_precision, DOMAIN_MIN_PRECISION.get(domain, min_precision))


def meets_floor(part: dict[str, Any], domain: str, min_precision: float = MIN_PRECISION) -> bool:
    """Whether one domain's grid cell (``{"precision": …}``) reaches that domain's floor: the one
    test both threshold choices apply."""
    return part["precision"] >= domain_floor(domain, min_precision)


def _floors_text(min_precision: float) -> str:
    own = "".join(f", {d} {p:g}" for d, p in sorted(DOMAIN_MIN_PRECISION.items()))
    return f"{min_precision:g}{own}"


def choose_domain_thresholds(
    table: list[dict[str, Any]], default: float, min_precision: float = MIN_PRECISION
) -> dict[str, float]:
    """Each domain's own operating threshold, where it is lower than ``default``: the lowest grid
    threshold whose precision *in that domain* reaches its floor (:func:`domain_floor`; ``table``:
    the grid of :func:`choose_operating_threshold`). Images of no recorded domain keep ``default``."""
    from inkloop.evaluation.domains import UNKNOWN_DOMAIN

    own: dict[str, float] = {}
    for domain in table[0].get("domains", {}) if table else ():
        if domain == UNKNOWN_DOMAIN:
            continue
        ok = [
            row["threshold"]
            for row in table
            if (cell := row["domains"][domain])["recall"] > 0 and meets_floor(cell, domain, min_precision)
        ]
        if ok and min(ok) < default:
            own[domain] = float(min(ok))
    return own


def duplicate_boxes(preds: list[Any], threshold: float, cover: float = 0.5) -> int:
    """Boxes at ``threshold`` that cover, or are covered by, ``cover`` of a higher-scoring kept box.

    Why intersection over the smaller box and not IoU: the duplicates reviewers delete are mostly
    a box nested in a bigger one around the same signature, whose IoU stays low.
    """
    count = 0
    for p in preds:
        keep = p.scores >= threshold
        boxes = p.boxes[keep][np.argsort(-p.scores[keep])]
        for i in range(1, len(boxes)):
            a, prev = boxes[i], boxes[:i]
            iw = np.clip(np.minimum(a[2], prev[:, 2]) - np.maximum(a[0], prev[:, 0]), 0, None)
            ih = np.clip(np.minimum(a[3], prev[:, 3]) - np.maximum(a[1], prev[:, 1]), 0, None)
            area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
            smaller = np.minimum(area(a), area(prev))
            count += bool(((iw * ih) / np.maximum(smaller, 1e-9) >= cover).any())
    return count


def choose_nms_iou(
    detector: Any, dataset: Any, ious: tuple[float, ...] = NMS_IOUS, flat: float = 0.01
) -> tuple[float, list[Any], list[dict[str, Any]]]:
    """The NMS IoU for the card, the val predictions made with it, and the table behind the choice."""
    from inkloop.evaluation.evaluator import compute_metrics, predict_dataset

    rows, preds_by_iou = [], {}
    for iou in ious:
        detector.iou = iou
        preds, _ = predict_dataset(detector, dataset)
        threshold, _, _ = choose_operating_threshold(preds, detector.card.class_names)
        m, _ = compute_metrics(preds, detector.card.class_names, threshold)
        preds_by_iou[iou] = preds
        rows.append(
            {
                "nms_iou": iou,
                "threshold": threshold,
                "mAP50": round(m.map50, 4),
                "mAP50-95": round(m.map50_95, 4),
                "precision": round(m.precision, 4),
                "recall": round(m.recall, 4),
                "duplicate_boxes": duplicate_boxes(preds, threshold),
            }
        )
    top = max(r["mAP50"] for r in rows)
    best = min(
        (r for r in rows if r["mAP50"] >= top - flat), key=lambda r: (r["duplicate_boxes"], -r["mAP50"])
    )
    detector.iou = best["nms_iou"]
    return float(best["nms_iou"]), preds_by_iou[best["nms_iou"]], rows


def latency_ratio(
    model_onnx: Path, imgsz: int, ref_cfg: str = "yolov8s.yaml", ref_imgsz: int = 640, repeats: int = 30
) -> dict[str, float]:
    """Median ms per image of ``model_onnx`` and of ``ref_cfg`` at ``ref_imgsz``, timed interleaved
    (``model_compare.time_shapes`` in ``tools/model_compare.py``, no spinning thread pools)."""
    import onnxruntime as ort
    from model_compare import reference_onnx, time_shapes, timing_options

    opts = timing_options()
    with tempfile.TemporaryDirectory() as tmp:
        ref = ort.InferenceSession(
            str(reference_onnx(Path(tmp), ref_cfg, ref_imgsz)), opts, providers=["CPUExecutionProvider"]
        )
        own = ort.InferenceSession(str(model_onnx), opts, providers=["CPUExecutionProvider"])
        ms = time_shapes({"model": (own, (imgsz, imgsz)), "ref": (ref, (ref_imgsz, ref_imgsz))}, repeats)
    return {
        "ms_per_image": ms["model"],
        "yolov8s_640_ms_per_image": ms["ref"],
        "ratio_to_yolov8s_640": round(ms["model"] / ms["ref"], 3),
    }


def ship(
    run_dir: Path,
    data: Path,
    out_dir: Path,
    version: str,
    weights: str = "best.pt",
    preprocessing: Preprocessing = "letterbox",
    imgsz: int | None = None,
    default_domain: str | None = None,
) -> ModelCard:
    """Export ``run_dir/weights/<weights>`` into ``out_dir`` with a complete, measured card.

    ``preprocessing``: how the run's pages reached the model in training (``stretch`` for a run
    on ``tools/stretched.py`` pages); the card records it, and everything is measured with it.
    ``imgsz``: the input size to serve at (default: the run's training size). A model trained on
    larger pages can be served smaller at the smaller size's cost; the card's ``input_size`` is
    the served size and its ``recipe.imgsz`` stays the training size. ``default_domain``: the
    domain of val images whose dataset records none (``scan`` for the research scans beside
    ``inkloop synth`` pages); the card then reports every domain beside the total.
    """
    import yaml

    from inkloop.datasets import dataset_manifest
    from inkloop.detection.detector import Detector
    from inkloop.evaluation.evaluator import EVAL_CONF, check_classes, load_dataset
    from inkloop.lifecycle.export import export_onnx
    from inkloop.lifecycle.training import RECIPES

    if (run_dir / "recipe.json").exists():
        args = json.loads((run_dir / "recipe.json").read_text())
    else:  # a run started by an older inkloop: the recipe by name, ultralytics' own args.yaml
        ul = yaml.safe_load((run_dir / "args.yaml").read_text()) if (run_dir / "args.yaml").exists() else {}
        args = {
            "recipe": "bundled-v1",
            **RECIPES["bundled-v1"].train_args(),
            "model": ul.get("model"),
            "imgsz": ul.get("imgsz", 416),
            "epochs": ul.get("epochs"),
        }
    results_csv = (
        (run_dir / "results.csv").read_text().splitlines() if (run_dir / "results.csv").exists() else []
    )
    epochs_done = max(0, len(results_csv) - 1)
    imgsz = int(imgsz or args.get("imgsz", 416))
    card = export_onnx(
        run_dir / "weights" / weights,
        out_dir,
        imgsz,
        "signature-detector",
        version,
        preprocessing=preprocessing,
    )
    # One pass over val at EVAL_CONF per NMS IoU serves everything: the IoU, the threshold grid,
    # the metrics at the chosen threshold and the best-F1 point (mAP does not depend on the threshold).
    det = Detector(resolve_model(out_dir / "model.onnx"), conf=EVAL_CONF)
    dataset = load_dataset(data, "val", default_domain)
    check_classes(dataset, len(det.card.class_names), det.card.model_version)
    nms_iou, preds, nms_table = choose_nms_iou(det, dataset)
    data_version = args.get("data_version") or dataset_manifest(data)["data_version"]
    card.iou_threshold = nms_iou
    card.data_version = data_version
    card.recipe = {**args, "epochs_completed": epochs_done, "weights": weights}
    card.metrics = {
        **operating_metrics(card, preds),
        "nms_choice": {
            "method": "fewest duplicate boxes among NMS IoUs within 0.01 mAP50 of the best",
            "grid": nms_table,
        },
        "cpu_latency": latency_ratio(out_dir / "model.onnx", imgsz),
    }
    card.license = "AGPL-3.0-or-later (derived from ultralytics YOLOv8, AGPL-3.0)"
    manifest_path = run_dir / "data_manifest.json"
    files = json.loads(manifest_path.read_text())["files"] if manifest_path.exists() else {}
    card.extra["training_data"] = {
        "name": "signatures-real + signatures-extra (Tobacco800, Roboflow signatures-xc8up, "
        "tech4humans/signature-detection)",
        # the run's data manifest hashes every file under the data root: train and val together
        "images_train_and_val": len([f for f in files if not f.endswith(".txt")]) or None,
    }
    init = args.get("init_weights") or _init_record(args.get("model"))
    if init:
        card.extra["init_weights"] = init
    card.save(out_dir / "card.json")
    return card


def operating_metrics(card: ModelCard, preds: list[Any]) -> dict[str, Any]:
    """Choose the card's operating thresholds on val predictions (``preds``, at ``EVAL_CONF``)
    and measure there: sets ``conf_threshold`` and ``domain_thresholds`` on ``card``, returns
    the card's val metrics at them, the grid behind the choice included."""
    from inkloop.evaluation.evaluator import compute_metrics

    threshold, table, rule = choose_operating_threshold(preds, card.class_names)
    card.conf_threshold = threshold
    card.domain_thresholds = choose_domain_thresholds(table, threshold)
    at_op, _ = compute_metrics(preds, card.class_names, card.thresholds)
    own = "".join(f"; {d} pages {t:g}" for d, t in sorted(card.domain_thresholds.items()))
    return {
        "split": "val",
        "images": at_op.n_images,
        "boxes": at_op.n_gt,
        "mAP50": round(at_op.map50, 4),
        "mAP50-95": round(at_op.map50_95, 4),
        "precision": round(at_op.precision, 4),
        "recall": round(at_op.recall, 4),
        "f1": round(at_op.f1, 4),
        "threshold_choice": {
            "method": f"{rule}, grid 0.10, 0.15, …, 0.70 on val"
            + (f"; each domain: its own lowest with its precision floor{own}" if own else ""),
            "recall_target": {"recall": TARGET_RECALL, "met": at_op.recall >= TARGET_RECALL},
            "grid": table,
            "best_f1": at_op.best_f1.to_dict(),
        },
        "domains": {
            d: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in m.items()}
            for d, m in sorted(at_op.domains.items())
        },
        "duplicate_boxes": duplicate_boxes(preds, threshold),
    }


def rethreshold(model_dir: Path, data: Path, version: str, default_domain: str | None = None) -> ModelCard:
    """A new version of a shipped model with the same weights and newly chosen operating
    thresholds (per domain): the card's val measurements are redone, the rest kept.

    Why a version and not an edit: the thresholds change what every run writes, and results
    record the ``name@version`` that produced them.
    """
    from inkloop.detection.detector import Detector
    from inkloop.evaluation.evaluator import EVAL_CONF, load_dataset, predict_dataset
    from inkloop.models.references import load_local

    ref = load_local(model_dir / "model.onnx")
    card = ref.card
    det = Detector(ref, conf=EVAL_CONF)
    preds, _ = predict_dataset(det, load_dataset(data, "val", default_domain))
    card.parent_version = card.model_version
    card.version = version
    card.metrics = {**card.metrics, **operating_metrics(card, preds)}
    card.extra["rethresholded"] = {
        "from": card.parent_version,
        "weights": "unchanged (same model.onnx, same SHA-256)",
        "data": str(data),
    }
    # the fp32 ONNX against its .pt on val, as `inkloop export` records it (the gate asks for it)
    from inkloop.lifecycle.variants import build_variants

    card.extra["variants"] = build_variants(
        model_dir, card, data, formats=(), split="val", calibration_splits=("train",)
    )
    card.save(model_dir / "card.json")
    return card


def _init_record(model: str | None) -> dict[str, Any] | None:
    """Starting weights of a run recorded before ``recipe.json`` carried ``init_weights``."""
    from inkloop.lifecycle.training import initial_weights

    if not model:
        return None
    try:
        return initial_weights(model)[1]
    except FileNotFoundError:
        return {"name": Path(model).name, "file": None, "sha256": None}


def measure_variants(
    model_dir: Path, data: Path, formats: tuple[str, ...] = ("int8", "openvino")
) -> dict[str, Any]:
    """INT8 and OpenVINO variants of a shipped model, scored on val beside the fp32 ONNX.

    Built in a scratch copy (the package ships only the fp32 ONNX and its ``.pt``), INT8
    calibrated on *train* pages so it is not tuned to the val pages it is scored on. Returns, per
    variant, its mAP50 change, box agreement and latency as :func:`inkloop.lifecycle.variants.build_variants`
    measured them; a variant within 1 point of mAP50 is "offered".
    """
    import shutil

    from inkloop.lifecycle.variants import build_variants
    from inkloop.models.references import load_local

    keep = (
        "status",
        "offered",
        "reason",
        "precision",
        "cpu_inference_precision",
        "format",
        "quantization",
        "parity",
        "metrics",
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("model.onnx", "model.pt", "card.json"):
            shutil.copy2(model_dir / name, work / name)
        card = load_local(work / "model.onnx").card
        records = build_variants(
            work, card, data, formats=formats, split="val", calibration_splits=("train",)
        )
    return {k: {f: v[f] for f in keep if f in v} for k, v in records.items()}


def remeasure(model_dir: Path, data: Path) -> ModelCard:
    """The card's measured parts again, for a model already shipped (no export, same weights)."""
    from model_compare import compare

    from inkloop.models.references import load_local

    card = load_local(model_dir / "model.onnx").card
    card.metrics["cpu_latency"] = latency_ratio(model_dir / "model.onnx", card.input_size)
    card.metrics["comparison"] = compare(str(model_dir / "model.onnx"), str(data))
    card.metrics["variants_on_val"] = measure_variants(model_dir, data)
    card.save(model_dir / "card.json")
    return card


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="training run folder (weights/, results.csv)")
    p.add_argument("--data", type=Path, required=True, help="YOLO dataset with a val split")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "sdk" / "inkloop" / "assets" / "signature-detector",
    )
    p.add_argument("--version", default="1")
    p.add_argument("--weights", default="best.pt")
    p.add_argument("--imgsz", type=int, help="input size to serve at (default: the run's training size)")
    p.add_argument(
        "--default-domain",
        help="domain of val images whose dataset has no domains.json (e.g. scan), reported per domain",
    )
    p.add_argument(
        "--preprocessing",
        choices=("letterbox", "stretch"),
        default="letterbox",
        help="how the run saw its pages (stretch: trained on tools/stretched.py pages)",
    )
    p.add_argument(
        "--remeasure",
        action="store_true",
        help="do not export: re-measure the model already in --out (CPU latency vs yolov8s@640, "
        "input size × preprocessing comparison, INT8/OpenVINO variants on val) and update its card",
    )
    p.add_argument(
        "--rethreshold",
        action="store_true",
        help="do not export: make --version of the model already in --out with its operating "
        "thresholds (per domain) chosen again on --data's val split; the weights stay",
    )
    a = p.parse_args(argv)
    if a.rethreshold:
        card = rethreshold(a.out, a.data, a.version, a.default_domain)
        keys = ("mAP50", "precision", "recall", "domains", "threshold_choice")
        shown = {k: card.metrics[k] for k in keys if k in card.metrics}
        shown["threshold_choice"] = {k: v for k, v in shown["threshold_choice"].items() if k != "grid"}
        head = {"model_version": card.model_version, "thresholds": card.thresholds.to_dict()}
        print(json.dumps({**head, **shown}, indent=2))
        return
    if a.remeasure:
        card = remeasure(a.out, a.data)
        keys = ("cpu_latency", "comparison", "variants_on_val")
        print(json.dumps({k: card.metrics[k] for k in keys}, indent=2))
        return
    if a.run is None:
        p.error("--run is required (unless --remeasure)")
    card = ship(a.run, a.data, a.out, a.version, a.weights, a.preprocessing, a.imgsz, a.default_domain)
    out: dict[str, Any] = {
        "model_version": card.model_version,
        "conf_threshold": card.conf_threshold,
        **card.metrics,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
