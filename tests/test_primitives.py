"""The one home of each primitive: box geometry, YOLO datasets (and the data version), file hashes,
the command line's exit codes and ``--set``.

Geometry is checked on properties (symmetry, bounds, one-to-one matching) and against the
hand-written versions it replaced, kept here as references, on random boxes: the move must not
change a single pairing. The dataset tests pin the data-version bug: an image the evaluator scores
must be in the data version, whatever its suffix and case.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml

import inkloop  # noqa: F401  (first: the usage-data switches)
from inkloop import storage
from inkloop.cli.common import ExitCode, parse_settings
from inkloop.datasets import (
    IMAGE_SUFFIXES,
    DatasetError,
    dataset_manifest,
    is_image,
    list_images,
    read_data_yaml,
)
from inkloop.documents.hashing import copy_hashing, sha256_file, sha256_stream, source_doc_id
from inkloop.evaluation.evaluator import load_dataset
from inkloop.geometry import box_iou, clip, match_boxes
from inkloop.lifecycle.training import local_training_data, parse_overrides, resolve_data_yaml

# ------------------------------------------------------------------------------------- references


def _iou_reference(a, b):
    """The scalar IoU routing and the benchmark computed before (plain ratio, 0 for no overlap)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _match_by_iou_reference(a, b, labels_a, labels_b, min_iou):
    """Routing's matching before: every same-label pair sorted by IoU, taken greedily."""
    cand = sorted(
        (
            (_iou_reference(x, y), i, j)
            for i, x in enumerate(a)
            for j, y in enumerate(b)
            if labels_a[i] == labels_b[j]
        ),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    used_a, used_b, pairs = set(), set(), []
    for v, i, j in cand:
        if v < min_iou:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


def _match_by_rows_reference(a, b, min_iou):
    """The benchmark's matching before: each box of ``a`` in turn takes its best unclaimed box."""
    used, pairs = set(), []
    for i, box in enumerate(a):
        best, best_j = 0.0, -1
        for j, box2 in enumerate(b):
            if j not in used and (v := _iou_reference(box, box2)) > best:
                best, best_j = v, j
        if best_j >= 0 and best >= min_iou:
            used.add(best_j)
            pairs.append((i, best_j))
    return pairs


def _random_boxes(rng, n, size=100.0):
    """Boxes that overlap often (a few centres, jittered), some on a grid so IoUs tie exactly."""
    centres = rng.integers(20, 80, size=(3, 2))
    c = centres[rng.integers(0, 3, size=n)] + rng.integers(-6, 7, size=(n, 2))
    wh = rng.integers(4, 30, size=(n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    return [tuple(float(v) for v in np.clip(b, 0, size)) for b in boxes]


# --------------------------------------------------------------------------------------- geometry


def test_iou_properties_on_random_boxes():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    iou = box_iou(a, b)
    assert iou.shape == (40, 30)
    assert (iou >= 0).all() and (iou <= 1).all()
    np.testing.assert_array_equal(iou, box_iou(b, a).T)  # symmetric
    self_iou = np.diag(box_iou(a, a, eps=0.0))
    assert np.allclose(self_iou[[x[2] > x[0] and x[3] > x[1] for x in a]], 1.0)
    # eps=0 is exactly the scalar ratio the routing signal and the benchmark computed
    plain = box_iou(a, b, eps=0.0)
    assert all(plain[i, j] == _iou_reference(a[i], b[j]) for i in range(40) for j in range(30))


def test_iou_known_values_and_edge_cases():
    a = (0.0, 0.0, 4.0, 8.0)  # area 32
    shifted = (0.0, 4.0, 4.0, 12.0)  # half of a: intersection 16, union 48
    assert box_iou([a], [shifted], eps=0.0)[0, 0] == pytest.approx(16 / 48)
    assert box_iou([a], [(10.0, 10.0, 12.0, 12.0)])[0, 0] == 0.0  # disjoint
    point = (5.0, 5.0, 5.0, 5.0)
    assert box_iou([point], [point], eps=0.0)[0, 0] == 0.0  # an empty union is 0, not a division by 0
    assert box_iou([], [a]).shape == (0, 1) and box_iou([a], []).shape == (1, 0)
    f32 = np.array([a, shifted], dtype=np.float32)
    assert box_iou(f32[0], f32, dtype=f32.dtype).dtype == np.float32  # NMS keeps its own precision


def test_matching_by_iou_is_one_to_one_and_the_same_as_routing_matched():
    rng = np.random.default_rng(1)
    for trial in range(60):
        a, b = _random_boxes(rng, int(rng.integers(0, 9))), _random_boxes(rng, int(rng.integers(0, 9)))
        la = [str(x) for x in rng.integers(0, 2, size=len(a))]
        lb = [str(x) for x in rng.integers(0, 2, size=len(b))]
        same = np.array([[x == y for y in lb] for x in la], dtype=bool).reshape(len(a), len(b))
        iou = box_iou(a, b, eps=0.0)
        pairs, lone_a, lone_b = match_boxes(iou, 0.3, allowed=same)
        assert pairs == _match_by_iou_reference(a, b, la, lb, 0.3), trial
        assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)  # one to one
        assert all(iou[i, j] >= 0.3 and la[i] == lb[j] for i, j in pairs)
        assert sorted(lone_a + [i for i, _ in pairs]) == list(range(len(a)))
        assert sorted(lone_b + [j for _, j in pairs]) == list(range(len(b)))


def test_matching_by_rows_is_the_benchmarks_greedy_order():
    rng = np.random.default_rng(2)
    for trial in range(60):
        a, b = _random_boxes(rng, int(rng.integers(0, 9))), _random_boxes(rng, int(rng.integers(0, 9)))
        pairs, _, _ = match_boxes(box_iou(a, b, eps=0.0), 0.5, order="rows")
        assert pairs == _match_by_rows_reference(a, b, 0.5), trial


def test_the_two_greedy_orders_answer_different_questions():
    # Row 0 overlaps both columns; row 1 only column 0, better than row 0 does.
    iou = np.array([[0.6, 0.55], [0.9, 0.0]])
    assert match_boxes(iou, 0.5)[0] == [(1, 0), (0, 1)]  # highest IoU first
    assert match_boxes(iou, 0.5, order="rows")[0] == [(0, 0)]  # row 0 first takes its best
    with pytest.raises(ValueError, match="order"):
        match_boxes(iou, 0.5, order="score")  # type: ignore[arg-type]


def test_clip_keeps_boxes_on_the_page():
    assert clip((-5, -5, 120, 50), 100, 40) == (0, 0, 100, 40)
    inside = (10.0, 5.0, 60.0, 30.0)
    assert clip(inside, 100, 40) == inside
    rng = np.random.default_rng(3)
    for box in rng.uniform(-50, 150, size=(50, 4)).tolist():
        c = clip(box, 100, 40)
        assert all(0 <= v <= lim for v, lim in zip(c, (100, 40, 100, 40), strict=True))
        assert clip(c, 100, 40) == c  # idempotent


# ---------------------------------------------------------------------------------------- datasets


def _suffix_cases() -> list[str]:
    """Every image suffix, in lower case, upper case and mixed case (``.Tif``)."""
    return sorted({s for x in IMAGE_SUFFIXES for s in (x, x.upper(), x[:2].upper() + x[2:])})


def test_every_image_the_evaluator_reads_is_in_the_data_version(tmp_path):
    """The data-version bug: training once knew fewer suffixes than the evaluator, so a ``.dng``
    page changed the scores without changing the recorded data version. Now a page of any suffix,
    in any case, counts on both sides; and changing its bytes makes a new data version."""
    root = tmp_path / "data"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for n, suffix in enumerate(_suffix_cases()):
        (root / "images" / "val" / f"page{n}{suffix}").write_bytes(f"image {n}".encode())
    (root / "images" / "val" / "notes.md").write_text("not an image")
    (root / "data.yaml").write_text(yaml.safe_dump({"val": "images/val", "names": {0: "signature"}}))

    scored = {s.image.relative_to(root).as_posix() for s in load_dataset(root, "val").samples}
    manifest = dataset_manifest(root)
    assert len(scored) == len(_suffix_cases()) and "images/val/notes.md" not in manifest["files"]
    assert scored <= set(manifest["files"])

    webp = next(root.glob("images/val/*.WEBP"))
    webp.write_bytes(b"another page")
    assert dataset_manifest(root)["data_version"] != manifest["data_version"]


def test_training_and_the_evaluator_read_one_data_yaml_rule(tmp_path):
    """A dataset folder whose data.yaml points elsewhere (``path``): training used the folder, the
    evaluator the ``path``; both now follow the yaml, as :func:`inkloop.datasets.read_data_yaml` says."""
    real = tmp_path / "real"
    (real / "images" / "val").mkdir(parents=True)
    (real / "images" / "val" / "a.png").write_bytes(b"a")
    (real / "images" / "train").mkdir()
    (real / "images" / "train" / "b.png").write_bytes(b"b")
    shell = tmp_path / "shell"
    shell.mkdir()
    (shell / "data.yaml").write_text(
        yaml.safe_dump({"path": "../real", "train": "images/train", "val": "images/val"})
    )

    cfg = yaml.safe_load(resolve_data_yaml(shell, tmp_path / "work").read_text())
    assert Path(cfg["path"]) == real.resolve() == read_data_yaml(shell / "data.yaml")[1]
    assert [s.image.resolve() for s in load_dataset(shell, "val").samples] == [
        real.resolve() / "images/val/a.png"
    ]


def test_unreadable_data_yaml_names_the_file(tmp_path):
    bad = tmp_path / "data.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(DatasetError, match=str(bad)):
        read_data_yaml(bad)
    bad.write_text("key: [unclosed\n")
    with pytest.raises(DatasetError, match="not a readable YAML"):
        resolve_data_yaml(bad, tmp_path / "work")


def test_a_stored_data_yaml_is_read_by_the_same_rule(tmp_path):
    url = "memory://inkloop-test-primitives/stored/data.yaml"
    storage.write_text(url, "- a list\n- not a mapping\n")
    with pytest.raises(DatasetError, match=f"{url}: expected a YOLO data.yaml mapping"):
        local_training_data(url, tmp_path / "work")


def test_listing_images(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "sub/c.tiff", "d.txt", ".png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff"]
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["a.jpg", "b.PNG"]
    assert is_image("scan.Jpeg") and not is_image("labels.txt") and not is_image(".png")


# ----------------------------------------------------------------------------------------- hashing


@pytest.mark.parametrize("size", [0, 1, (1 << 20) + 7])
def test_file_hashes_are_sha256_of_the_bytes(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size=size, dtype=np.uint8).tobytes()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(path) == want == source_doc_id(str(path))
    url = f"memory://inkloop-test-primitives/{size}/f.bin"
    storage.write_bytes(url, data)
    with storage.open_file(url) as f:
        assert sha256_stream(f) == want
    assert source_doc_id(url) == want
    assert source_doc_id(str(tmp_path / "missing.pdf")) is None
    copy = io.BytesIO()
    assert copy_hashing(io.BytesIO(data), copy, chunk_size=4096) == want and copy.getvalue() == data


# ---------------------------------------------------------------------------------- command line


def test_exit_codes_keep_their_numbers():
    """Scripts branch on these numbers: they are the command line's contract."""
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "ERROR": 1,
        "USAGE": 2,
        "QUARANTINED": 3,
        "MODEL": 4,
        "GATE_REFUSED": 5,
        "INCOMPLETE": 6,
    }


def test_set_is_read_once_the_same_way_for_the_cli_and_the_training_process():
    items = ["lr0=0.002", "cos_lr=true", "degrees=[1, 2]", "name=a=b", "empty="]
    assert parse_overrides(items) == parse_settings(items)
    assert parse_overrides(items) == {
        "lr0": 0.002,
        "cos_lr": True,
        "degrees": [1, 2],
        "name": "a=b",
        "empty": None,
    }
    for bad in ("novalue", "=1"):
        with pytest.raises(ValueError, match=f"KEY=VALUE, got '{bad}'"):
            parse_overrides([bad])
        with pytest.raises(typer.BadParameter, match="KEY=VALUE"):
            parse_settings([bad])


def _python_m(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300)


def test_bad_set_is_a_usage_error_in_both_command_lines(tmp_path):
    data, run = str(tmp_path / "data"), tmp_path / "run"
    (tmp_path / "data").mkdir()
    p = _python_m("inkloop", "train", "--run-dir", str(run), "--data", data, "--set", "novalue", "--json")
    assert p.returncode == ExitCode.USAGE, p.stderr
    assert "KEY=VALUE" in p.stderr and not run.exists()
    child = _python_m("inkloop.lifecycle.training", "--data", data, "--set", "x")
    assert child.returncode == 2 and "--set expects KEY=VALUE, got 'x'" in child.stderr


def test_a_dataset_error_exits_with_the_usage_code_and_names_the_file(tmp_path):
    bad = tmp_path / "data.yaml"
    bad.write_text(json.dumps(["not", "a", "mapping"]))
    p = _python_m("inkloop", "evaluate", "--data", str(bad), "--quiet")
    out = (p.stdout + p.stderr).replace("\n", "")
    assert p.returncode == ExitCode.USAGE, p.stderr
    assert "dataset error" in out and str(bad) in out
