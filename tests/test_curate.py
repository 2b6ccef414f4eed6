"""Curation against a real FiftyOne database (FiftyOne's own mongod), on the committed fixture pages.

The database lives in ``FIFTYONE_DATABASE_DIR`` (the Makefile's ``.cache/fiftyone-db``, or that
same project cache when run directly); it must be set before fiftyone is imported, hence at module
import. Every test works on its own uniquely named dataset, deleted at the end of the module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(ROOT / ".cache" / "fiftyone-db"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

from inkloop.convert.yolo import from_yolo, read_labels  # noqa: E402
from inkloop.curation.records import CurationError, PageRecord, split_for_key, thumbnail_embedding  # noqa: E402
from inkloop.curation.store import CurationStore  # noqa: E402
from inkloop.types import Detection  # noqa: E402

PAGES = ROOT / "tests" / "fixtures" / "pages"
P188 = "tobacco800_188"  # 1 signature, 1000×1000
P31 = "tobacco800_31"  # 3 signatures; the same memo as XC_IDR (from another public dataset)
XC_IDR = "xc8up_idr55d00"  # 3 signatures, 480×623
XC_23 = "xc8up_image_23"  # 3 signatures, 1662×2344
SESSION = uuid.uuid4().hex[:8]


def _fixture_pages() -> dict[str, tuple[Path, int, int, list[Detection]]]:
    """page_key -> (image, width, height, ground truth in page pixels) from the YOLO labels."""
    from PIL import Image

    out = {}
    for img in sorted(p for p in PAGES.iterdir() if p.suffix in (".png", ".jpg")):
        key = img.stem.split("_jpg")[0]
        with Image.open(img) as im:
            w, h = im.size
        gt = [
            Detection("signature", 1.0, from_yolo(box, w, h))
            for _, box in read_labels(img.with_suffix(".txt").read_text())
        ]
        out[key] = (img, w, h, gt)
    return out


FIX = _fixture_pages()


def shifted(dets: list[Detection], dx: float = 2.0, dy: float = 1.0, score: float = 0.9) -> list[Detection]:
    return [
        Detection(d.label, score, (d.xyxy[0] + dx, d.xyxy[1] + dy, d.xyxy[2] + dx, d.xyxy[3] + dy))
        for d in dets
    ]


def record(key: str, predictions: list[Detection] | None = None, gt: Any = "labels", **kw: Any) -> PageRecord:
    """A record for a fixture page: ground truth from its labels unless given (None = unreviewed)."""
    img, w, h, labels = FIX[key]
    return PageRecord(
        page_key=kw.pop("page_key", key),
        image=kw.pop("image", img),
        width=w,
        height=h,
        predictions=shifted(labels) if predictions is None else predictions,
        model_version="test-model",
        ground_truth=labels if gt == "labels" else gt,
        **kw,
    )


def all_records() -> list[PageRecord]:
    return [record(k) for k in FIX]


@pytest.fixture(scope="module")
def make_store() -> Iterator[Callable[[], CurationStore]]:
    """Fresh uniquely named datasets; all deleted when the module ends."""
    made: list[CurationStore] = []

    def make() -> CurationStore:
        store = CurationStore(f"inkloop-test-{SESSION}-{len(made)}")
        made.append(store)
        return store

    yield make
    for store in made:
        if store.fo.dataset_exists(store.name):
            store.delete()


def close(a: tuple[float, ...], b: tuple[float, ...], tol: float) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------
# Processes first (before this module starts a database in-process): import stays light; a
# process that used the database leaves no mongod behind; another directory's service is refused.

SUBPROCESS_STORE = textwrap.dedent(
    """
    import airflow  # noqa: F401  (before fiftyone, as in an Airflow worker: trap 2)
    from inkloop.curation.store import CurationStore
    store = CurationStore("process-check")
    print(len(store.dataset))
    store.delete()
    """
)


def _holders(path: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(str(path) in part for part in proc.info["cmdline"] or []):
                found.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _run_store_process(tmp_path: Path, db: Path) -> subprocess.CompletedProcess[str]:
    """SUBPROCESS_STORE in a child process whose FiftyOne database directory is ``db``."""
    env = dict(os.environ, FIFTYONE_DATABASE_DIR=str(db), AIRFLOW_HOME=str(tmp_path / "airflow"))
    # output to files, not pipes: a service the process starts inherits them, and reading a pipe
    # to its end would wait for the service, which stays up while another process uses it
    out, err = tmp_path / "store.out", tmp_path / "store.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        p = subprocess.run(
            [sys.executable, "-c", SUBPROCESS_STORE], env=env, stdout=fo, stderr=fe, timeout=300
        )
    return subprocess.CompletedProcess(p.args, p.returncode, out.read_text(), err.read_text())


def _skip_if_a_service_runs(wait: float = 90.0) -> None:
    """These checks need FiftyOne's service not running: it would be joined, not started.

    They are marked ``serial``: ``make test`` runs them after the parallel suite, alone, where a
    service left by the other tests stops once its last client has exited; so wait for that
    first. A service that outlives the wait belongs to something else (a notebook, ``fiftyone
    app``): the check cannot be made, and the test skips naming it.
    """
    from inkloop.curation.database import running_services

    deadline = time.monotonic() + wait
    while running_services() and time.monotonic() < deadline:
        time.sleep(1.0)
    if running_services():
        pytest.skip(f"a FiftyOne database service is already running: {running_services()}")


def test_import_inkloop_does_not_import_fiftyone() -> None:
    code = "import sys, inkloop, inkloop.curation.store, inkloop.cli; assert 'fiftyone' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.serial
def test_database_process_stops_with_its_client(tmp_path: Path) -> None:
    """A process (importing airflow first) that finds no service starts one, uses it and exits:
    FiftyOne's service must stop its mongod.

    The suite's database directory: a private one would, while its service runs, make other test
    workers' FiftyOne processes refuse to start (one service per user, ``check_service``). A
    process of another worker that joins the service meanwhile rightly keeps it up: then the
    check is void, and the test skips naming it."""
    from inkloop.curation.database import running_services

    _skip_if_a_service_runs()
    db = Path(os.environ["FIFTYONE_DATABASE_DIR"]).resolve()
    log = db / "log" / "mongo.log"
    before = _stamp(log)
    p = _run_store_process(tmp_path, db)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _stamp(log) not in (None, before)  # it really started a mongod there (a new or rotated log)
    deadline = time.monotonic() + 20
    while _holders(db) and time.monotonic() < deadline:
        time.sleep(0.5)
    if _holders(db) and (others := _database_clients()):
        pytest.skip(f"another process joined the service meanwhile: {others} ({running_services()})")
    assert _holders(db) == []


def _stamp(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` is and when it last changed (mongod rotates its log at each start)."""
    if not path.exists():
        return None
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


def _database_clients() -> list[str]:
    """Processes other than FiftyOne's service connected to its mongod (other test workers')."""
    import psutil

    from inkloop.curation.database import running_services

    mongods = [p for p in psutil.process_iter(["pid", "name"]) if (p.info["name"] or "").startswith("mongod")]
    ports = set()
    for m in mongods:
        with contextlib.suppress(psutil.Error):
            ports |= {c.laddr.port for c in m.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    service = {m.pid for m in mongods} | {pid for pid, _ in running_services()}
    clients = (
        {c.pid for c in psutil.net_connections("tcp") if c.raddr and c.raddr.port in ports} - service - {None}
    )
    found = []
    for pid in sorted(clients):
        with contextlib.suppress(psutil.Error):
            found.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
    return found


CONNECT = """
from inkloop.curation.database import import_fiftyone
fo = import_fiftyone()
fo.list_datasets()
print("connected")
"""


@pytest.mark.serial
def test_processes_starting_the_database_at_once_share_one_service(tmp_path: Path) -> None:
    """Three processes that find no service and connect at the same moment (three Airflow tasks,
    say): FiftyOne alone would start three, and the later mongods fail on the first one's lock
    file (DBPathInUse, then ServiceListenTimeout). inkloop starts it one process at a time.

    The suite's own database directory: a private one would, while its service runs, make other
    test workers' FiftyOne processes refuse to start (one service per user, ``check_service``)."""
    from inkloop.curation.database import running_services

    _skip_if_a_service_runs()
    # output to files, not pipes: the service the first client starts inherits its stdout, and
    # it waits for the other clients to be reaped, which a parent blocked on a pipe never does
    logs = [tmp_path / f"client-{i}.log" for i in range(3)]
    procs = []
    for log in logs:
        with open(log, "w") as fh:
            procs.append(
                subprocess.Popen([sys.executable, "-c", CONNECT], stdout=fh, stderr=subprocess.STDOUT)
            )
    codes = [p.wait(timeout=300) for p in procs]
    ours = str(Path(os.environ["FIFTYONE_DATABASE_DIR"]).resolve())
    if any(codes) and any(d and str(Path(d).resolve()) != ours for _, d in running_services()):
        # a program of this user (a notebook, `fiftyone app`) started a service for another directory
        pytest.skip(f"a FiftyOne service for another directory started meanwhile: {running_services()}")
    for code, log in zip(codes, logs, strict=True):
        out = log.read_text()
        assert code == 0, out[-3000:]
        assert out.strip().endswith("connected"), out[-3000:]


# --------------------------------------------------------------------------------------------


def test_upsert_is_idempotent_and_keeps_reviews(make_store: Callable[[], CurationStore]) -> None:
    store = make_store()
    assert store.upsert_pages(all_records()) == {"added": 4, "updated": 0, "reviewed": 4}
    assert store.upsert_pages(all_records()) == {"added": 0, "updated": 4, "reviewed": 4}
    assert len(store.dataset) == 4
    assert sorted(store.dataset.values("page_key")) == sorted(FIX)

    # The unique index on page_key refuses a second sample for a page, whatever the caller does.
    with pytest.raises(ValueError, match="duplicate key"):
        store.dataset.add_sample(store.fo.Sample(filepath=str(FIX[P188][0]), page_key=P188))

    # Boxes survive the round trip through FiftyOne's normalized boxes.
    page = store.get_page(P31)
    for got, want in zip(page["ground_truth"], FIX[P31][3], strict=True):
        assert close(got.xyxy, want.xyxy, 1e-6)
    assert [d.score for d in page["predictions"]] == [0.9, 0.9, 0.9]

    # A record without a review updates predictions but never erases an earlier review.
    new_preds = shifted(FIX[P31][3], dx=5, score=0.5)
    store.upsert_pages([record(P31, predictions=new_preds, gt=None)])
    page = store.get_page(P31)
    assert len(page["ground_truth"]) == 3
    assert [d.score for d in page["predictions"]] == [0.5, 0.5, 0.5]

    # A reviewed negative is an empty Detections with reviewed=True; a skipped page has no truth.
    store.upsert_pages(
        [record(P188, gt=[], review_status="submitted", annotator="ann@example.com", task_id=7)]
    )
    store.upsert_pages([record(XC_23, gt=None, review_status="skipped")])
    s188 = store.dataset.one(store.fo.ViewField("page_key") == P188)
    assert s188.reviewed is True and s188.ground_truth.detections == []
    assert s188.annotator == "ann@example.com" and s188.task_id == 7
    s23 = store.dataset.one(store.fo.ViewField("page_key") == XC_23)
    assert s23.reviewed is False and s23.ground_truth is None and s23.review_status == "skipped"
    assert store.stats()["reviewed"] == 3 and store.stats()["negatives"] == 1
    assert len(store.dataset) == 4


def test_evaluate_counts_tp_fp_fn(make_store: Callable[[], CurationStore]) -> None:
    store = make_store()
    gt31 = FIX[P31][3]
    far = Detection("signature", 0.8, (10.0, 10.0, 60.0, 40.0))
    store.upsert_pages(
        [
            record(P188),  # 1 TP
            record(P31, predictions=[*shifted(gt31[:2]), far]),  # 2 TP, 1 FP, 1 FN
            record(XC_23, predictions=[far], gt=[]),  # reviewed negative: 1 FP
            record(XC_IDR, gt=None),  # not reviewed: not evaluated
        ]
    )
    summary = store.evaluate(compute_mAP=True)
    assert (summary["pages"], summary["tp"], summary["fp"], summary["fn"]) == (3, 3, 2, 1)
    assert summary["precision"] == pytest.approx(3 / 5)
    assert summary["recall"] == pytest.approx(3 / 4)
    assert summary["pages_with_errors"] == 2 and summary["negatives"] == 1
    assert 0.0 <= summary["mAP"] <= 1.0
    per_page = dict(
        zip(
            store.dataset.values("page_key"),
            zip(*(store.dataset.values(f"eval_{k}") for k in ("tp", "fp", "fn")), strict=True),
            strict=True,
        )
    )
    assert per_page == {P188: (1, 0, 0), P31: (2, 1, 1), XC_23: (0, 1, 0), XC_IDR: (None, None, None)}


def test_label_mistakes_flag_deliberately_wrong_labels(make_store: Callable[[], CurationStore]) -> None:
    store = make_store()
    gt31, gt23 = FIX[P31][3], FIX[XC_23][3]
    # P31: the reviewer missed a signature the model is sure about.
    missed = record(P31, predictions=shifted(gt31, score=0.97), gt=gt31[1:])
    # XC_23: one ground-truth box is drawn 29% of its width to the side (IoU ≈ 0.55).
    x0, y0, x1, y1 = gt23[0].xyxy
    dx = 0.29 * (x1 - x0)
    sloppy = [Detection("signature", 1.0, (x0 + dx, y0, x1 + dx, y1)), *gt23[1:]]
    loose = record(XC_23, predictions=shifted(gt23, score=0.95), gt=sloppy)
    store.upsert_pages([record(P188), record(XC_IDR), missed, loose])

    flagged = store.find_label_mistakes()
    assert set(flagged) == {P31, XC_23}
    reasons = dict(
        zip(store.dataset.values("page_key"), store.dataset.values("label_issue_reasons"), strict=True)
    )
    assert "missing_box" in reasons[P31]
    assert "loose_box" in reasons[XC_23]
    assert reasons[P188] == [] and reasons[XC_IDR] == []
    # Brain's per-box localization mistakenness is on the sloppy box.
    s23 = store.dataset.one(store.fo.ViewField("page_key") == XC_23)
    assert s23.ground_truth.detections[0].mistakenness_loc > 0.7


def test_near_duplicates_are_flagged(make_store: Callable[[], CurationStore], tmp_path: Path) -> None:
    from PIL import Image

    store = make_store()
    copy = tmp_path / "copy.png"
    shutil.copyfile(FIX[P188][0], copy)
    smaller = tmp_path / "rescanned.jpg"  # the same page at 60% size, re-encoded as JPEG
    with Image.open(FIX[P188][0]) as im:
        im.convert("L").resize((600, 600)).save(smaller, quality=80)
    store.upsert_pages(
        [
            *all_records(),
            record(P188, image=copy, page_key="copy-of-188"),
            record(P188, image=smaller, page_key="rescan-of-188"),
        ]
    )
    groups = store.find_near_duplicates()
    # The copy and the rescan join their original; the two datasets' versions of one memo too.
    assert groups == [sorted(["copy-of-188", "rescan-of-188", P188]), sorted([P31, XC_IDR])]
    keys = store.dataset.values("page_key")
    flags = dict(zip(keys, store.dataset.values("near_duplicate"), strict=True))
    dup_of = dict(zip(keys, store.dataset.values("dup_of"), strict=True))
    assert sum(flags[k] for k in ("copy-of-188", "rescan-of-188", P188)) == 2
    assert sum(flags[k] for k in (P31, XC_IDR)) == 1
    assert flags[XC_23] is False
    for k, flagged in flags.items():
        if flagged:
            assert store.dataset.one(store.fo.ViewField("page_key") == k).dup_distance < 0.05
            assert dup_of[k] in {g for grp in groups if k in grp for g in grp} - {k}
    # The distances behind it: a copy is ~0, different pages far apart.
    e = {k: thumbnail_embedding(FIX[k][0]) for k in FIX}
    assert 1 - float(e[P31] @ e[XC_IDR]) < 0.01
    assert 1 - float(e[P188] @ e[XC_23]) > 0.3


def _noise_page(path: Path, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (200, 160), dtype=np.uint8)).save(path)
    return path


def _splits(store: CurationStore) -> dict[str, str | None]:
    return dict(zip(store.dataset.values("page_key"), store.dataset.values("split"), strict=True))


def test_frozen_split_is_stable_and_keeps_groups_together(
    make_store: Callable[[], CurationStore], tmp_path: Path
) -> None:
    store = make_store()
    copy = tmp_path / "copy.png"
    shutil.copyfile(FIX[P188][0], copy)
    store.upsert_pages([*all_records(), record(P188, image=copy, page_key="copy-of-188")])
    store.upsert_pages(
        [record(XC_23, gt=None, page_key="unreviewed", image=_noise_page(tmp_path / "u.png", 99))]
    )

    first = store.freeze_test_split(fraction=0.5, val_fraction=0.2, seed=3)
    s1 = _splits(store)
    assert s1["unreviewed"] is None  # only reviewed pages get a split
    assert s1["copy-of-188"] == s1[P188] and s1[P31] == s1[XC_IDR]  # groups share a split
    assert s1[XC_23] == split_for_key(XC_23, 0.5, 0.2, 3)  # a lone page: its own key's hash
    assert first["newly_assigned"] == 5
    tags = dict(zip(store.dataset.values("page_key"), store.dataset.values("tags"), strict=True))
    assert all(tags[k] == [v] for k, v in s1.items() if v)

    # Stable: again, with the frozen settings, nothing moves.
    again = store.freeze_test_split()
    assert _splits(store) == s1 and again["newly_assigned"] == 0
    with pytest.raises(CurationError, match="frozen"):
        store.freeze_test_split(fraction=0.3)

    # New pages get a split on arrival; old ones keep theirs; a copy of a page joins its split.
    new = [
        record(P188, page_key=f"new-{i}", image=_noise_page(tmp_path / f"n{i}.png", i), gt=[])
        for i in range(12)
    ]
    copy31 = tmp_path / "copy31.png"
    shutil.copyfile(FIX[P31][0], copy31)
    store.upsert_pages([*new, record(P31, page_key="copy-of-31", image=copy31)])
    store.freeze_test_split()
    s2 = _splits(store)
    assert {k: s2[k] for k in s1} == s1
    assert s2["copy-of-31"] == s1[P31]
    assert all(s2[f"new-{i}"] == split_for_key(f"new-{i}", 0.5, 0.2, 3) for i in range(12))
    assert {"train", "test"} <= set(s2.values())

    # A train page whose image turns out to duplicate a test page: set aside, test untouched.
    test_key = next(k for k, v in s2.items() if v == "test" and k.startswith("new-"))
    train_key = next(k for k, v in s2.items() if v == "train" and k.startswith("new-"))
    leak = tmp_path / "leak.png"
    shutil.copyfile(tmp_path / f"n{test_key.split('-')[1]}.png", leak)
    store.upsert_pages([record(P188, page_key=train_key, image=leak, gt=[])])
    out = store.freeze_test_split()
    s3 = _splits(store)
    assert s3[test_key] == "test" and s3[train_key] == "excluded" and out["newly_excluded"] == 1
    assert {k: v for k, v in s3.items() if v == "test"} == {k: v for k, v in s2.items() if v == "test"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_yolo_versions_and_manifest(make_store: Callable[[], CurationStore], tmp_path: Path) -> None:
    from PIL import Image

    from inkloop.datasets import dataset_manifest

    store = make_store()
    negatives = [
        record(P188, page_key=f"neg-{i}", image=_noise_page(tmp_path / f"neg{i}.png", 100 + i), gt=[])
        for i in range(8)
    ]
    unreviewed = record(XC_23, page_key="not-reviewed", image=_noise_page(tmp_path / "nr.png", 7), gt=None)
    store.upsert_pages([*all_records(), *negatives, unreviewed])
    store.freeze_test_split(fraction=0.3, val_fraction=0.2, seed=1)
    splits = _splits(store)

    out = tmp_path / "exports"
    summary = store.export_yolo(out)
    root = Path(summary["path"])
    assert root.parent == out and root.name == summary["version"] and not summary["reused"]
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["data_version"] == summary["data_version"] == dataset_manifest(root)["data_version"]

    import yaml

    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == {0: "signature"} and data["train"] == "images/train"

    # Every image and label file is in the manifest with its hash, and nothing else is.
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json", "data.yaml"}
    for rel, digest in manifest["files"].items():
        assert _sha256(root / rel) == digest

    # Labels equal the ground truth (page pixels) within 0.5 px; negatives are empty files.
    exported: dict[str, str] = {}
    for split in ("train", "val", "test"):
        for key in manifest["pages"][split]:
            exported[key] = split
            stem = key.replace(":", "_")
            img = next((root / "images" / split).glob(f"{stem}.*"))
            with Image.open(img) as im:
                w, h = im.size
            got = [
                from_yolo(b, w, h)
                for _, b in read_labels((root / "labels" / split / f"{stem}.txt").read_text())
            ]
            want = FIX[key][3] if key in FIX else []
            assert len(got) == len(want)
            for g, d in zip(got, want, strict=True):
                assert close(g, d.xyxy, 0.5)
    assert "not-reviewed" not in exported
    assert exported == {k: v for k, v in splits.items() if v}  # test pages only ever in test
    assert summary["negatives"] == 8 and summary["boxes"] == 10

    # The same data again: the same folder, untouched. A clash of names: refused.
    mtime = (root / "manifest.json").stat().st_mtime_ns
    again = store.export_yolo(out)
    assert again["reused"] and again["path"] == summary["path"]
    assert (root / "manifest.json").stat().st_mtime_ns == mtime
    store.upsert_pages([record(P188, page_key="neg-extra", image=_noise_page(tmp_path / "x.png", 5), gt=[])])
    with pytest.raises(CurationError, match="never overwritten"):
        store.export_yolo(out, version=summary["version"])
    newer = store.export_yolo(out, version="v2")
    assert newer["data_version"] != summary["data_version"] and (out / "v2" / "manifest.json").is_file()
    assert _sha256(root / "manifest.json") and (root / "manifest.json").stat().st_mtime_ns == mtime
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


# --------------------------------------------------------------------------------------------
# The CLI, in process (same database), on a results folder and a reviews file as the loop writes them


def _results_and_reviews(tmp_path: Path) -> tuple[Path, Path]:
    from inkloop.detection.results import ResultStore
    from inkloop.review.labelstudio import ReviewedPage, write_reviews
    from inkloop.types import Page, PageResult

    res = tmp_path / "results"
    reviews = []
    with ResultStore(res) as rs:
        for key, (img, w, h, gt) in FIX.items():
            page = Page(doc_id=f"doc-{key}", index=0, width=w, height=h)
            rs.write_document([PageResult(page, shifted(gt), "test-model", source=str(img))])
            # Reviewed on an image twice the page's size: boxes come back in its pixels.
            big = [Detection(d.label, 1.0, tuple(v * 2 for v in d.xyxy)) for d in gt]  # type: ignore[misc]
            reviews.append(
                ReviewedPage(
                    page.page_key,
                    task_id=len(reviews) + 1,
                    status="submitted",
                    ground_truth=big,
                    width=2 * w,
                    height=2 * h,
                    image="/data/upload/x.png",
                )
            )
    rev = tmp_path / "reviews.jsonl"
    write_reviews(reviews, rev)
    return res, rev


def test_cli_end_to_end(
    make_store: Callable[[], CurationStore], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from inkloop import storage
    from inkloop.cli import app

    name = make_store().name
    res, rev = _results_and_reviews(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> dict[str, Any]:
        result = runner.invoke(app, ["curate", *args, "--dataset", name, "--json"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    logs_read: list[str] = []
    read_log = storage.read_log

    def counting(url: str, *args: Any, **kwargs: Any) -> Any:
        logs_read.append(Path(url).name)
        return read_log(url, *args, **kwargs)

    monkeypatch.setattr(storage, "read_log", counting)
    first = run("import-results", str(res), "--reviews", str(rev), "-q")
    assert (first["added"], first["updated"], first["reviewed"]) == (4, 0, 4)
    assert logs_read.count("results.jsonl") == 1  # the progress bar's size comes from that one read
    monkeypatch.undo()
    assert first["unrenderable_sources"] == {}
    again = run("import-results", str(res), "--reviews", str(rev), "-q")
    assert (again["added"], again["updated"]) == (0, 4)

    store = CurationStore(name)
    assert len(store.dataset) == 4
    for key, (_, _, _, gt) in FIX.items():  # review boxes scaled back to page pixels
        got = store.get_page(f"doc-{key}:0")["ground_truth"]
        assert all(close(g.xyxy, d.xyxy, 1e-6) for g, d in zip(got, gt, strict=True))

    ev = run("evaluate")
    assert (ev["tp"], ev["fp"], ev["fn"]) == (10, 0, 0) and "mAP" in ev
    issues = run("find-issues", "-q")
    assert issues["near_duplicate_groups"] == [[f"doc-{P31}:0", f"doc-{XC_IDR}:0"]]
    assert issues["label_mistakes"] == []
    split = run("split", "--test-fraction", "0.25")
    assert split["config"]["test_fraction"] == 0.25
    export = run("export", "--out", str(tmp_path / "exp"), "-q")
    assert Path(export["path"], "manifest.json").is_file()
    app_info = run("app")
    assert (
        app_info["dataset_exists"] is True
        and "fiftyone" in app_info["command"]
        and name in app_info["command"]
    )

    missing = runner.invoke(app, ["curate", "evaluate", "--dataset", f"{name}-absent"])
    assert missing.exit_code == 1 and "no FiftyOne dataset" in missing.output
    bad = runner.invoke(app, ["curate", "import-results", str(tmp_path / "nowhere"), "--dataset", name])
    assert bad.exit_code == 2


def test_domains_from_import_to_export_and_a_new_frozen_version(
    make_store: Callable[[], CurationStore], tmp_path: Path
) -> None:
    """Pages get their domain on import (fixture scans: images; contracts: text PDFs with a placed
    signature), exports write domains.json, and adding the digital pages to a frozen scan-only
    split makes a new frozen version that the gate refuses to mix with the old one."""
    from domain_data import DIGITAL_PAGES, contract_pdf

    from inkloop.curation.cycle import import_results
    from inkloop.detection.results import ResultStore
    from inkloop.evaluation.evaluator import load_dataset
    from inkloop.lifecycle.gate import _frozen_split_check
    from inkloop.lifecycle.training import split_version
    from inkloop.models.references import ModelCard
    from inkloop.review.labelstudio import ReviewedPage, write_reviews
    from inkloop.types import Page, PageResult

    store = make_store()
    res, rev = _results_and_reviews(tmp_path)  # the four fixture scans, reviewed
    told: list[tuple[str, int]] = []
    first = import_results(
        store,
        res,
        rev,
        progress=lambda n: told.append(("page", n)),
        on_total=lambda n: told.append(("total", n)),
    )
    assert told == [("total", 4)] + [("page", 1)] * 4  # the size first, then each page rendered
    assert first["domains"] == {"scan": 4}
    assert {store.get_page(f"doc-{k}:0")["domain"] for k in FIX} == {"scan"}
    store.freeze_test_split(fraction=0.5, val_fraction=0.0, seed=0)
    v1 = store.export_yolo(tmp_path / "exp", version="v1")
    scan_only = split_version(v1["path"], "test")
    assert v1["domains"]["test"] == {"scan": v1["splits"]["test"]}

    # Born-digital contracts arrive: results and reviews of their pages, as the loop writes them.
    res2, reviews, z = tmp_path / "results2", [], 150 / 72
    with ResultStore(res2) as rs:
        for i, spec in enumerate(DIGITAL_PAGES):
            doc, rect = contract_pdf(PAGES, spec)
            pdf = tmp_path / f"contract-{i}.pdf"
            doc.save(pdf)
            page = Page(doc_id=f"contract-{i}", index=0, width=1275, height=1650, dpi=150)
            rs.write_document([PageResult(page, [], "test-model", source=str(pdf))])
            box = Detection("signature", 1.0, (rect.x0 * z, rect.y0 * z, rect.x1 * z, rect.y1 * z))
            reviews.append(ReviewedPage(page.page_key, i + 10, "submitted", [box], 1275, 1650, "x.png"))
    write_reviews(reviews, tmp_path / "reviews2.jsonl")
    second = import_results(store, res2, tmp_path / "reviews2.jsonl")
    assert second["domains"] == {"digital": len(DIGITAL_PAGES)}
    frozen = store.freeze_test_split()
    assert set(frozen["domains"]["test"]) == {"scan", "digital"}, frozen["domains"]
    v2 = store.export_yolo(tmp_path / "exp", version="v2")
    assert set(v2["domains"]["test"]) == {"scan", "digital"}
    assert not [w for w in v2["warnings"] if "test split holds no" in w]
    recorded = json.loads((Path(v2["path"]) / "domains.json").read_text())
    assert set(recorded["images"].values()) == {"scan", "digital"}
    assert "domains.json" in json.loads((Path(v2["path"]) / "manifest.json").read_text())["files"]
    test = load_dataset(v2["path"], "test")
    assert {s.domain for s in test.samples} == {"scan", "digital"}
    assert sum(s.domain == "scan" for s in test.samples) == v1["splits"]["test"]  # test pages stay
    # The digital part makes a new frozen version: a candidate trained holding out the scan-only
    # split is refused on the new one (its training data may hold these pages).
    mixed = split_version(v2["path"], "test")
    assert mixed != scan_only
    card = ModelCard(name="m", version="v9", class_names=["signature"])
    card.recipe = {"data": {"frozen": {"test": scan_only}}}
    ok, why = _frozen_split_check(card, mixed, "test")
    assert not ok and "another test split" in why
    assert _frozen_split_check(card, scan_only, "test")[0]


def test_service_for_another_directory_is_refused(
    make_store: Callable[[], CurationStore], tmp_path: Path
) -> None:
    """With this module's database running, a process configured for another directory would be
    silently attached to it by FiftyOne; inkloop refuses with the reason instead."""
    make_store()  # this process's database service is up
    db = tmp_path / "db"
    p = _run_store_process(tmp_path, db)
    assert p.returncode != 0
    assert "FiftyOne database service for" in p.stderr and "FIFTYONE_DATABASE_DIR" in p.stderr
    assert not (db / "log" / "mongo.log").exists()
