"""The onnxruntime detector: parity with ultralytics' predict, NMS, providers, batching."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from inkloop.detection.detector import Detector, select_providers
from inkloop.detection.nms import decode, nms
from inkloop.geometry import box_iou
from inkloop.models.references import ModelError
from inkloop.models.resolve import resolve_model
from parity import BATCHED, OPENVINO_BOX, OPENVINO_IOU, OPENVINO_SCORE, ULTRALYTICS_BOX, ULTRALYTICS_SCORE


def _match(a, b):
    """Greedy pairing of two lists of (xyxy, score) by IoU."""
    pairs, used = [], set()
    for box, score in a:
        if not b:
            break
        ious = box_iou(box, [x[0] for x in b], eps=0.0)[0]
        j = int(ious.argmax())
        if ious[j] > 0.5 and j not in used:
            used.add(j)
            pairs.append(((box, score), b[j]))
    return pairs


@pytest.mark.parametrize(
    "page", ["tobacco800_31.png", "xc8up_image_23_jpg.rf.39b931c2ad1076588ae38f5726a5e127.jpg"]
)
def test_parity_with_ultralytics_predict(pages_dir, page):
    """Same ONNX file, same page: boxes and scores as YOLO(...).predict's (``parity.ULTRALYTICS_*``)."""
    from ultralytics import YOLO

    ref = resolve_model(None)
    conf = 0.05  # low, so even an early checkpoint yields boxes to compare
    img = np.asarray(Image.open(pages_dir / page).convert("RGB"))
    ours = Detector(ref, conf=conf).detect([img])[0]
    yolo = YOLO(str(ref.path), task="detect")
    res = yolo.predict(
        img[:, :, ::-1].copy(),
        imgsz=ref.card.input_size,
        conf=conf,
        iou=ref.card.iou_threshold,
        device="cpu",
        verbose=False,
    )[0]
    theirs = [
        (tuple(b), float(s)) for b, s in zip(res.boxes.xyxy.numpy(), res.boxes.conf.numpy(), strict=True)
    ]
    mine = [(d.xyxy, d.score) for d in ours]
    # boxes right at the threshold may flip either way; everything clearly above it must match
    clear = [m for m in mine if m[1] > conf + 0.02]
    assert len(theirs) > 0, "the model found nothing to compare; use a trained model"
    pairs = _match(clear, theirs)
    assert len(pairs) == len(clear)
    assert abs(len(mine) - len(theirs)) <= len(mine) - len(clear) + 1
    ULTRALYTICS_BOX.check(max(np.abs(np.array(a) - np.array(b)).max() for (a, _), (b, _) in pairs), page)
    ULTRALYTICS_SCORE.check(max(abs(s_a - s_b) for (_, s_a), (_, s_b) in pairs), page)


def test_nms_matches_torchvision():
    import torch
    import torchvision

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 500, size=(300, 2))
    wh = rng.uniform(10, 120, size=(300, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, size=300).astype(np.float32)
    ours = nms(boxes, scores, 0.5)
    ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    assert ours.tolist() == ref.tolist()


def test_decode_thresholds_and_classes():
    pred = np.zeros((6, 4), np.float32)  # 2 classes, 4 anchors: cx cy w h c0 c1
    pred[:4, 0] = [50, 50, 20, 20]
    pred[:4, 1] = [51, 51, 20, 20]  # overlaps 0, same class → suppressed
    pred[:4, 2] = [51, 51, 20, 20]  # overlaps 0, other class → kept
    pred[:4, 3] = [200, 200, 10, 10]  # below threshold
    pred[4, 0], pred[4, 1], pred[5, 2], pred[4, 3] = 0.9, 0.8, 0.7, 0.1
    boxes, scores, cls = decode(pred, conf=0.25, iou=0.7)
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    assert cls.tolist() == [0, 1]
    assert boxes[0].tolist() == [40, 40, 60, 60]


def test_batched_equals_single(pages_dir):
    det = Detector(None, conf=0.05)
    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(pages_dir.glob("*.png"))]
    batched = det.detect(imgs)
    single = [det.detect([im])[0] for im in imgs]
    for a, b in zip(batched, single, strict=True):
        assert len(a) == len(b) and a
        BATCHED.check(max(np.abs(np.subtract(x.xyxy, y.xyxy)).max() for x, y in zip(a, b, strict=True)))
        assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) < 1e-4


def test_grayscale_and_rgba_inputs(pages_dir):
    det = Detector(None, conf=0.05)
    rgb = np.asarray(Image.open(pages_dir / "tobacco800_31.png").convert("RGB"))
    gray = rgb[:, :, 0].copy()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    a, b, c = det.detect([rgb, gray, rgba])
    assert len(a) == len(b) == len(c)


def test_unavailable_provider_is_a_clear_error():
    with pytest.raises(ModelError, match="not available"):
        select_providers("tensorrt")
    assert select_providers("cpu") == ["CPUExecutionProvider"]


@pytest.mark.skipif(  # find_spec, not importorskip: a bare `import openvino` sends its usage event
    importlib.util.find_spec("openvino") is None, reason="the openvino package is part of the dev install"
)
def test_openvino_runtime_gives_the_onnxruntime_boxes(tmp_path, pages_dir):
    """``--device openvino`` without onnxruntime's provider runs the same ONNX on OpenVINO Runtime:
    detector, pipeline (two inference threads) and evaluator all work and agree with onnxruntime."""
    from inkloop.api import DetectOptions, detect
    from inkloop.detection.openvino_backend import PROVIDER
    from inkloop.detection.results import read_results

    cpu, ov = Detector(None, conf=0.05), Detector(None, device="openvino", conf=0.05, threads=1)
    assert ov.session.get_providers() == [PROVIDER] and ov.stride == cpu.stride == 32
    # fp32 asked and given, also on CPUs where OpenVINO's own default is bf16 (AVX-512 BF16, AMX)
    assert ov.session.precision == "f32"
    size = cpu.card.input_size

    def check(a, b, page_w, page_h, what):
        """Box corners compared in model-input pixels (where the network regresses them)."""
        assert len(a) == len(b)
        if not a:
            return
        # Pair by overlap, not by list order: two boxes with near-equal scores may swap places.
        paired = _match([(x.xyxy, x.score) for x in a], [(y.xyxy, y.score) for y in b])
        assert len(paired) == len(a), (what, a, b)
        pairs = [
            (SimpleNamespace(xyxy=xa, score=sa), SimpleNamespace(xyxy=xb, score=sb))
            for (xa, sa), (xb, sb) in paired
        ]
        to_model = size / max(page_w, page_h)
        OPENVINO_BOX.check(max(np.abs(np.subtract(x.xyxy, y.xyxy)).max() for x, y in pairs) * to_model, what)
        OPENVINO_IOU.check(max(1 - float(box_iou(x.xyxy, y.xyxy, eps=0.0)[0, 0]) for x, y in pairs), what)
        OPENVINO_SCORE.check(max(abs(x.score - y.score) for x, y in pairs), what)

    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(pages_dir.glob("*.png"))]
    for im, a, b in zip(imgs, cpu.detect(imgs), ov.detect(imgs), strict=True):
        assert a
        check(a, b, im.shape[1], im.shape[0], "detector")

    pages = [str(p) for p in sorted(pages_dir.iterdir()) if p.suffix != ".txt"]
    detect(pages, tmp_path / "cpu", DetectOptions(), verdict=False)
    detect(pages, tmp_path / "ov", DetectOptions(device="openvino"), verdict=False)
    ours = {r.page_key: r for r in read_results(tmp_path / "cpu")}
    theirs = {r.page_key: r for r in read_results(tmp_path / "ov")}
    assert ours.keys() == theirs.keys() and len(ours) == len(pages)
    for key, r in ours.items():
        check(r.detections, theirs[key].detections, r.page.width, r.page.height, "pipeline")
