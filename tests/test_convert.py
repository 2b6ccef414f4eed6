"""Round-trips of every coordinate conversion: pixels ⇄ normalized ⇄ LS percent ⇄ YOLO ⇄ FiftyOne ⇄ PDF."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inkloop.convert.fiftyone import from_fiftyone, to_fiftyone
from inkloop.convert.labelstudio import from_labelstudio, to_labelstudio
from inkloop.convert.normalized import from_normalized, to_normalized
from inkloop.convert.pdf import pixels_to_points, points_to_pixels
from inkloop.convert.yolo import format_line, from_yolo, parse_line, read_labels, to_yolo
from inkloop.geometry import clip
from inkloop.types import Detection, Page

sizes = st.integers(min_value=16, max_value=12000)


@st.composite
def page_and_box(draw: st.DrawFn) -> tuple[int, int, tuple[float, float, float, float]]:
    w, h = draw(sizes), draw(sizes)
    x0 = draw(st.floats(0, w - 1, allow_nan=False))
    y0 = draw(st.floats(0, h - 1, allow_nan=False))
    x1 = draw(st.floats(x0 + 0.5, w, allow_nan=False))
    y1 = draw(st.floats(y0 + 0.5, h, allow_nan=False))
    return w, h, (x0, y0, x1, y1)


def close(a: tuple[float, ...], b: tuple[float, ...], tol: float = 1e-6) -> bool:
    return all(abs(x - y) <= tol * max(1.0, abs(x)) for x, y in zip(a, b, strict=True))


@given(page_and_box())
def test_normalized_round_trip(pb):
    w, h, box = pb
    n = to_normalized(box, w, h)
    assert all(0 <= v <= 1 for v in n)
    assert close(from_normalized(n, w, h), box)


@given(page_and_box())
def test_yolo_round_trip_including_text_lines(pb):
    w, h, box = pb
    assert close(from_yolo(to_yolo(box, w, h), w, h), box)
    cls, parsed = parse_line(format_line(0, to_yolo(box, w, h)))
    assert cls == 0
    # 6 decimals in the file: exact to well under a pixel on a 12 000 px page
    assert close(from_yolo(parsed, w, h), box, tol=0) or all(
        abs(a - b) < 0.02 for a, b in zip(from_yolo(parsed, w, h), box, strict=True)
    )


@given(page_and_box())
def test_labelstudio_round_trip(pb):
    w, h, box = pb
    v = to_labelstudio(box, w, h)
    assert v["rotation"] == 0
    assert close(from_labelstudio(v, w, h), box)


@given(page_and_box())
def test_fiftyone_round_trip(pb):
    w, h, box = pb
    assert close(from_fiftyone(to_fiftyone(box, w, h), w, h), box)


@given(page_and_box(), st.floats(36, 600))
def test_pdf_points_round_trip(pb, dpi):
    _, _, box = pb
    assert close(points_to_pixels(pixels_to_points(box, dpi), dpi), box)


@given(page_and_box())
def test_chain_through_every_format(pb):
    """pixels → LS → pixels → YOLO → pixels → FiftyOne → pixels → normalized → pixels."""
    w, h, box = pb
    b = from_labelstudio(to_labelstudio(box, w, h), w, h)
    b = from_yolo(to_yolo(b, w, h), w, h)
    b = from_fiftyone(to_fiftyone(b, w, h), w, h)
    b = from_normalized(to_normalized(b, w, h), w, h)
    assert close(b, box, tol=1e-6)


def test_labelstudio_rotation_gives_enclosing_box():
    # a 100x20 box rotated 90° around its top-left corner at (10, 10) on a 1000x1000 page
    v = {"x": 1.0, "y": 1.0, "width": 10.0, "height": 2.0, "rotation": 90}
    x0, y0, x1, y1 = from_labelstudio(v, 1000, 1000)
    assert (round(x0), round(y0), round(x1), round(y1)) == (-10, 10, 10, 110)


def test_pdf_points_known_values():
    assert pixels_to_points((150, 300, 300, 450), 150) == (72, 144, 144, 216)


def test_detection_carries_pdf_points_for_pdf_pages():
    page = Page("d", 0, 1275, 1650, dpi=150, pdf_size=(612, 792))
    d = Detection("signature", 0.9, (150.0, 300.0, 300.0, 450.0)).to_dict(page)
    assert d["pdf_xyxy"] == [72.0, 144.0, 144.0, 216.0]
    assert "pdf_xyxy" not in Detection("signature", 0.9, (1, 2, 3, 4)).to_dict(Page("d", 0, 10, 10))


def test_clip_and_bad_lines():
    assert clip((-5, -5, 120, 50), 100, 40) == (0, 0, 100, 40)
    with pytest.raises(ValueError, match="5 fields"):
        parse_line("0 0.5 0.5")
    assert read_labels("0 0.5 0.5 0.1 0.1\n\n") == [(0, (0.5, 0.5, 0.1, 0.1))]
    with pytest.raises(ValueError):
        to_normalized((0, 0, 1, 1), 0, 10)
