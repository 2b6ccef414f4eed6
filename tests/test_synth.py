"""``inkloop synth``: born-digital pages signed with real crops, labelled, deterministic, leak-free.

The crops come from a tiny YOLO dataset made of the committed fixture pages (the Tobacco800 page
and its re-scan in signatures-xc8up go to train together, the two other pages to val), so the
no-leakage check has two disjoint sets of real signatures to tell apart.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import inkloop  # noqa: F401  (first: the usage-data switches before pymupdf)
from inkloop.synth import SynthError, SynthOptions, synthesize
from inkloop.synth.compose import INK_KINDS, draw_ink, make_document, template_slots
from inkloop.synth.crops import load_crops

FIXTURE_PAGES = Path(__file__).parent / "fixtures" / "pages"
SPLIT_OF = {
    "tobacco800_31": "train",
    "xc8up_idr55d00": "train",  # the same letter as tobacco800_31, scanned again: same split
    "tobacco800_188": "val",
    "xc8up_image_23": "val",
}
#: At 150 dpi: rendered ink may pass the label by this much (anti-aliasing, interpolation) …
OUTSIDE_PX = 3.0
#: … and a label may be this much larger than the ink seen (a crop's faint pixels, downsampled).
SLACK_PX = {"image": 4.0, "image_paper": 8.0, "ink_annot": 2.0, "paths": 2.0}


def _split_of(path: str) -> str:
    name = Path(path.split("#")[0]).name
    return next(s for prefix, s in SPLIT_OF.items() if name.startswith(prefix))


@pytest.fixture(scope="module")
def crops_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crops")
    for image in sorted(FIXTURE_PAGES.iterdir()):
        if image.suffix == ".txt":
            continue
        split = _split_of(str(image))
        for sub, src in (("images", image), ("labels", image.with_suffix(".txt"))):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / sub / split / src.name)
    return root


@pytest.fixture(scope="module")
def synth_set(crops_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "set"
    summary = synthesize(SynthOptions(str(crops_dataset), str(out), {"train": 10, "val": 8}, seed=1))
    return out, summary


def _provenance(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]


def _render(pdf: bytes, index: int, dpi: float, tmp: Path) -> np.ndarray:
    """Gray pixels of a page, through inkloop's own document rendering (annotations on)."""
    import cv2

    from inkloop.documents.opening import open_document

    path = tmp / "render.pdf"
    path.write_bytes(pdf)
    with open_document(path) as d:
        return cv2.cvtColor(d.render_for_people(index, dpi), cv2.COLOR_RGB2GRAY).astype(np.int32)


def test_same_seed_same_bytes_other_seed_other_pages(crops_dataset: Path, tmp_path: Path) -> None:
    def make(name: str, seed: int) -> Path:
        synthesize(SynthOptions(str(crops_dataset), str(tmp_path / name), {"train": 3, "val": 2}, seed=seed))
        return tmp_path / name

    a, b, c = make("a", 7), make("b", 7), make("c", 8)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "summary.json")
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "summary.json")
    assert any(f.suffix == ".pdf" for f in files) and any(f.suffix == ".png" for f in files)
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    ma, mc = (json.loads((d / "manifest.json").read_text())["data_version"] for d in (a, c))
    assert ma != mc


def test_val_pages_use_only_val_crops(synth_set: tuple[Path, dict]) -> None:
    out, _ = synth_set
    rows = _provenance(out)
    used = {"train": set(), "val": set()}
    for row in rows:
        for sig in row["signatures"]:
            assert sig["crop_split"] == row["split"]
            assert _split_of(sig["crop"]) == row["split"], f"{row['image']} uses {sig['crop']}"
            used[row["split"]].add(sig["crop"].split("#")[0])
    assert used["train"] and used["val"] and not used["train"] & used["val"]


def test_labels_match_provenance_and_negative_pages_have_none(synth_set: tuple[Path, dict]) -> None:
    out, summary = synth_set
    rows = _provenance(out)
    assert {r["split"] for r in rows} == {"train", "val"}
    assert sum(r["split"] == "val" for r in rows) == 8
    negatives = {n["kind"] for r in rows for n in r["negatives"]}
    assert {"initials_box", "stamp", "logo"} <= negatives
    assert negatives & {"empty_place", "typed_name"}
    empty = 0
    for r in rows:
        lines = (out / r["label"]).read_text().splitlines()
        assert len(lines) == sum(s["labelled"] for s in r["signatures"])
        empty += not lines
    assert empty == sum(c["negative_pages"] for c in summary["splits"].values()) and empty > 0
    assert {s["ink"] for r in rows for s in r["signatures"]} == set(INK_KINDS)


def test_typed_names_are_text_and_never_labelled(crops_dataset: Path, tmp_path: Path) -> None:
    import pymupdf

    crops = load_crops(str(crops_dataset), "train")
    seen = 0
    for seed in range(40):
        doc = make_document(np.random.default_rng(seed), crops)
        typed = [(r, n) for r in doc.pages for n in r.negatives if n["kind"] == "typed_name"]
        if not typed:
            continue
        pdf = pymupdf.open(stream=doc.pdf)
        for rec, neg in typed:
            assert neg["text"] in pdf[rec.index].get_text()
            for ink in rec.inks:  # the typed name is not inside any signature's label
                x0, y0, x1, y1 = neg["box_pt"]
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                assert not (ink.box[0] <= cx <= ink.box[2] and ink.box[1] <= cy <= ink.box[3])
            seen += 1
        if seen >= 4:
            break
    assert seen >= 4


@pytest.mark.parametrize("kind", INK_KINDS)
def test_label_is_the_box_of_the_rendered_ink(kind: str, crops_dataset: Path, tmp_path: Path) -> None:
    """Each kind alone: the ink drawn on a blank page of the same size, rendered, is inside the
    label (up to anti-aliasing) and fills it; on the real page the ink reaches the pixels."""
    import pymupdf

    from inkloop.convert.pdf import points_to_pixels

    crops = load_crops(str(crops_dataset), "train")
    dpi = 150.0
    checked = 0
    for seed in range(4):
        doc = make_document(np.random.default_rng(seed), crops, ink_kinds=(kind,))
        bare = make_document(np.random.default_rng(seed), crops, ink_kinds=(kind,), with_ink=False)
        src = pymupdf.open(stream=doc.pdf)
        for rec in doc.pages:
            if not rec.inks:
                continue
            with_ink = _render(doc.pdf, rec.index, dpi, tmp_path)
            without = _render(bare.pdf, rec.index, dpi, tmp_path)
            for ink in rec.inks:
                blank = pymupdf.open()
                page = blank.new_page(width=src[rec.index].rect.width, height=src[rec.index].rect.height)
                draw_ink(page, ink)
                ys, xs = np.nonzero(_render(blank.tobytes(), 0, dpi, tmp_path) < 185)
                assert len(xs), f"{kind}: nothing rendered"
                x0, y0, x1, y1 = points_to_pixels(ink.box, dpi)
                seen = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                outside = max(x0 - seen[0], y0 - seen[1], seen[2] - x1, seen[3] - y1)
                slack = max(seen[0] - x0, seen[1] - y0, x1 - seen[2], y1 - seen[3])
                assert outside <= OUTSIDE_PX, (ink.kind, seed, ink.box, seen)
                assert slack <= SLACK_PX[ink.kind], (ink.kind, seed, ink.box, seen)
                # on the document itself the ink changes the pixels inside its label
                a, b, c, d = (int(v) for v in (x0, y0, x1, y1))
                assert ((without[b:d, a:c] - with_ink[b:d, a:c]) > 60).sum() > 20
                checked += ink.kind == kind  # vector ink falls back to a picture for tiny crops
    assert checked >= 3


def _template(path: Path) -> None:
    """A blank contract: a 'Signature: ____' line and an empty signature field."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 90), "PURCHASE AGREEMENT", fontsize=16)
    page.insert_textbox(
        (72, 120, 520, 300),
        "The buyer agrees to purchase the goods listed in the schedule and to pay the price on delivery. "
        "This agreement is governed by the law of the seller's place of business.",
        fontsize=11,
    )
    page.insert_text((72, 480), "Signature: " + "_" * 34, fontsize=11)
    page.insert_text((320, 600), "Seller", fontsize=10)
    w = pymupdf.Widget()
    w.field_type = pymupdf.PDF_WIDGET_TYPE_SIGNATURE
    w.field_name = "SellerSignature"
    w.rect = pymupdf.Rect(320, 530, 520, 585)
    page.add_widget(w)
    doc.save(str(path))


def test_template_mode_signs_the_places_the_verdict_finds(crops_dataset: Path, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    _template(templates / "purchase.pdf")
    slots = template_slots(templates / "purchase.pdf")
    assert {s.kind for s in slots} == {"label", "field"}
    out = tmp_path / "set"
    summary = synthesize(
        SynthOptions(
            str(crops_dataset), str(out), {"val": 6}, seed=3, templates=str(templates), template_share=1.0
        )
    )
    assert summary["templates"] == ["purchase.pdf"]
    rows = _provenance(out)
    assert all(r["host"] == "template:purchase.pdf" for r in rows)
    placed = 0
    for r in rows:
        for sig in r["signatures"]:
            x0, _y0, x1, y1 = sig["box_pt"]
            cx = (x0 + x1) / 2
            near = [
                s for s in slots if s.x0 - 10 <= cx <= s.x1 + 10 and s.baseline - 80 <= y1 <= s.baseline + 20
            ]
            assert near, f"{r['image']}: signature {sig['box_pt']} is on no signing place"
            placed += 1
    assert placed >= 4
    # the documents keep the template's text layer and field, as an inbox would hold them
    import pymupdf

    pdf = pymupdf.open(out / rows[0]["document"])
    assert "PURCHASE AGREEMENT" in pdf[0].get_text()
    assert [w.field_name for w in pdf[0].widgets()] == ["SellerSignature"]


def test_the_evaluator_and_training_accept_the_set(synth_set: tuple[Path, dict], tmp_path: Path) -> None:
    from inkloop.evaluation.domains import domain_of
    from inkloop.evaluation.evaluator import evaluate, load_dataset
    from inkloop.lifecycle.training import dataset_manifest, resolve_data_yaml

    out, summary = synth_set
    val = load_dataset(out / "data.yaml", "val")
    assert len(val) == 8
    assert {domain_of(s.image) for s in val.samples} == {"digital"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data_version"] == dataset_manifest(out)["data_version"] == summary["data_version"]
    assert manifest["splits"] == {"train": 10, "val": 8} and manifest["classes"] == ["signature"]
    labels = [ln for p in (out / "labels").rglob("*.txt") for ln in p.read_text().splitlines()]
    assert manifest["boxes"] == len(labels)
    assert resolve_data_yaml(out / "data.yaml", tmp_path / "work").is_file()
    report = evaluate("bundled", out / "data.yaml", "val", plot=False)
    assert report.n_images == 8
    assert report.n_gt == sum(len(s.boxes) for s in val.samples) > 0


def test_bad_inputs_name_the_file(crops_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(SynthError, match="nowhere"):
        synthesize(SynthOptions(str(tmp_path / "nowhere"), str(tmp_path / "o1"), {"val": 1}))
    with pytest.raises(SynthError, match="'test'"):
        synthesize(SynthOptions(str(crops_dataset), str(tmp_path / "o2"), {"test": 1}))
    with pytest.raises(SynthError, match="leak"):  # a flat folder has no splits to keep apart
        synthesize(SynthOptions(str(FIXTURE_PAGES), str(tmp_path / "o5"), {"train": 1, "val": 1}))
    blank = tmp_path / "blank-templates"
    blank.mkdir()
    import pymupdf

    d = pymupdf.open()
    d.new_page().insert_text((72, 72), "A letter with no place to sign at all, just words.")
    d.save(str(blank / "letter.pdf"))
    with pytest.raises(SynthError, match=r"letter\.pdf"):
        synthesize(SynthOptions(str(crops_dataset), str(tmp_path / "o3"), {"val": 1}, templates=str(blank)))
    (blank / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    with pytest.raises(SynthError, match=r"broken\.pdf"):
        synthesize(SynthOptions(str(crops_dataset), str(tmp_path / "o4"), {"val": 1}, templates=str(blank)))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(SynthError, match="not empty"):
        synthesize(SynthOptions(str(crops_dataset), str(tmp_path / "full"), {"val": 1}))
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_cli_in_a_subprocess(crops_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-set"
    p = subprocess.run(
        [sys.executable, "-m", "inkloop", "synth", "--crops", str(crops_dataset), "--out", str(out),
         "--pages", "2,1", "--seed", "5", "--dpi", "120", "--json", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["splits"]["train"]["pages"] == 2 and summary["splits"]["val"]["pages"] == 1
    assert all(r["dpi"] == 120.0 for r in _provenance(out))
    bad = subprocess.run(
        [sys.executable, "-m", "inkloop", "synth", "--crops", str(tmp_path / "missing-ds"), "--out",
         str(tmp_path / "o"), "--pages", "1", "-q"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "missing-ds" in bad.stdout + bad.stderr


@pytest.mark.fiftyone
def test_crops_from_the_curation_dataset_keep_its_splits() -> None:
    """``--crops fiftyone:NAME``: the reviewed pages of a real FiftyOne dataset, by their split."""
    import uuid

    from PIL import Image

    from inkloop.convert.yolo import from_yolo, read_labels
    from inkloop.curation.records import PageRecord
    from inkloop.curation.store import CurationStore
    from inkloop.types import Detection

    store = CurationStore(f"inkloop-synth-test-{uuid.uuid4().hex[:8]}")
    try:
        records, boxes = [], {"train": 0, "val": 0}
        for image in sorted(p for p in FIXTURE_PAGES.iterdir() if p.suffix != ".txt"):
            with Image.open(image) as im:
                w, h = im.size
            labels = read_labels(image.with_suffix(".txt").read_text())
            dets = [Detection("signature", 1.0, from_yolo(b, w, h)) for _c, b in labels]
            records.append(PageRecord(image.stem, image, w, h, [], "test", dets))
            boxes[_split_of(str(image))] += len(dets)
        store.upsert_pages(records)
        for sample in store.dataset.iter_samples(autosave=True):
            sample["split"] = _split_of(sample.filepath)
        for split in ("train", "val"):
            crops = load_crops(f"fiftyone:{store.name}", split)
            assert {_split_of(c.source) for c in crops} == {split}
            assert {c.split for c in crops} == {split}
            assert len(crops) == boxes[split]
    finally:
        store.delete()


def test_a_storage_url_gets_the_whole_set(crops_dataset: Path) -> None:
    import uuid

    import fsspec

    url = f"memory://synth-{uuid.uuid4().hex[:8]}/set"
    synthesize(SynthOptions(str(crops_dataset), url, {"val": 2}, seed=0))
    fs = fsspec.filesystem("memory")
    root = url.removeprefix("memory://")
    names = {p.removeprefix(f"/{root}/") for p in fs.find(root)}
    assert {"data.yaml", "domains.json", "manifest.json", "provenance.jsonl", "summary.json"} <= names
    assert sum(n.startswith("images/val/") for n in names) == 2
    assert sum(n.startswith("documents/val/") for n in names) >= 1
    fs.rm(root.split("/")[0], recursive=True)
