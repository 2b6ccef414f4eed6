"""``inkloop demo``: the Gradio app, driven through gradio_client and through a real browser
(Debian's chromium, installed by ``.ci/install-chromium.sh`` when missing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from badfiles import bomb_png, corrupt_pdf

pytestmark = pytest.mark.slow


def _free_port() -> int:
    from inkloop.net import free_port

    return free_port("127.0.0.1")


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``inkloop demo`` as users start it, in its own process."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_HUB_"))}  # it sets its own
    scratch = tmp_path_factory.mktemp("demo-tmp")  # the demo's TMPDIR: empty again once it stops
    env["TMPDIR"] = str(scratch)
    inkloop = str(Path(sys.executable).with_name("inkloop"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [inkloop, "demo", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
    # SIGTERM stops it like Ctrl-C: its runs and Gradio's copies of uploads and downloads are gone
    assert not list(scratch.iterdir()), sorted(p.name for p in scratch.iterdir())


@pytest.fixture(scope="module")
def client(demo_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # gradio_client looks the hub up at construction
    import tempfile

    from gradio_client import Client

    # gradio_client downloads each output through a folder it makes in the temp dir and never
    # removes (``<temp>/<40 hex digits>``): both that and the downloads stay in pytest's folders.
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp_path_factory.mktemp("client-tmp"))
    try:
        yield Client(demo_url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    finally:
        tempfile.tempdir = saved


def _operating_threshold() -> float:
    from inkloop.models.resolve import resolve_model

    return resolve_model(None).card.conf_threshold


def test_demo_detects_a_pdf_and_offers_the_downloads(client, documents_dir: Path) -> None:
    from gradio_client import handle_file

    from inkloop.models.resolve import resolve_model

    t = _operating_threshold()
    gallery, table, files, status, verdict = client.predict(
        handle_file(str(documents_dir / "scanned letters.pdf")), "bundled", t, api_name="/detect"
    )
    assert "4 page(s)" in status and resolve_model(None).card.model_version in status
    assert table["headers"] == ["page", "label", "score", "x0", "y0", "x1", "y1", "place"]
    assert {row[0] for row in table["data"]} == {1, 2, 3, 4} and len(table["data"]) >= 4
    assert all(row[2] > t for row in table["data"])
    assert len(gallery) == 4 and all(Path(g["image"]).is_file() for g in gallery)
    names = sorted(Path(f).name for f in files)
    assert names == ["crops.zip", "results.json", f"scanned_letters-t{t:.2f}.pdf"]  # annotated PDF
    assert verdict.startswith("## Verdict: ")


def _cli_verdicts(documents_dir: Path, names: list[str], tmp_path: Path) -> dict[str, dict]:
    """What ``inkloop detect`` says about these documents (verdicts.jsonl), for the demo to match."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for name in names:
        (inbox / name).write_bytes((documents_dir / name).read_bytes())
    inkloop = str(Path(sys.executable).with_name("inkloop"))
    subprocess.run([inkloop, "detect", str(inbox), "--out", str(out), "-q"], check=True, timeout=300)
    lines = (out / "verdicts.jsonl").read_text().splitlines()
    return {Path(v["source"]).name: v for v in map(json.loads, lines)}


def test_demo_gives_the_born_digital_contracts_the_clis_verdicts_with_their_evidence(
    client, documents_dir: Path, tmp_path: Path
) -> None:
    from gradio_client import handle_file

    names = ["contract-signed.pdf", "contract-unsigned.pdf"]
    cli = _cli_verdicts(documents_dir, names, tmp_path)
    assert {n: cli[n]["verdict"] for n in names} == {
        "contract-signed.pdf": "signed",
        "contract-unsigned.pdf": "unsigned",
    }
    t = _operating_threshold()
    for name in names:
        gallery, table, files, _, verdict = client.predict(
            handle_file(str(documents_dir / name)), "bundled", t, api_name="/detect"
        )
        expected = cli[name]
        assert verdict.startswith(f"## Verdict: {expected['verdict']}\n"), verdict
        for reason in expected["reasons"]:
            assert f"- {reason}" in verdict
        (place,) = expected["places"]  # the Signature: line, found by its label
        status = {"signed_ink": "signed (ink)", "empty": "empty"}[place["status"]]
        assert f"| {place['place_id']} | 1 | label “{place['text']}” | {status} |" in verdict
        # the boxes the CLI kept, on the place it found; the table says which place each box signs
        ink = [(i["place_id"], round(i["score"], 4)) for i in expected["ink"]]
        assert [(row[7], row[2]) for row in table["data"]] == ink
        assert len(gallery) == 1 and Path(gallery[0]["image"]).is_file()
        saved = json.loads(Path(next(f for f in files if f.endswith("results.json"))).read_text())
        assert saved["verdict"]["verdict"] == expected["verdict"] and saved["threshold"] == t


def test_threshold_slider_refilters_boxes_and_verdict_without_detecting_again(
    client, documents_dir: Path
) -> None:
    from gradio_client import handle_file

    t = _operating_threshold()
    _, table, *_ = client.predict(
        handle_file(str(documents_dir / "scanned letters.pdf")), "bundled", t, api_name="/detect"
    )
    at_t = table["data"]
    gallery, high, _, verdict = client.predict(0.75, api_name="/threshold")  # this session's run
    assert high["data"] and all(row[2] > 0.75 for row in high["data"])
    assert high["data"] == [row for row in at_t if row[2] > 0.75]
    assert sum(int(g["caption"].split(": ")[1].split()[0]) for g in gallery) == len(high["data"])
    assert "threshold 0.75" in verdict
    low = client.predict(0.05, api_name="/threshold")[1]["data"]
    assert len(low) > len(at_t) and [r for r in low if r[2] > t] == at_t  # decoded once, at the floor
    assert client.predict(t, api_name="/threshold")[1]["data"] == at_t
    # the verdict follows: the signed contract's one box (0.82 with @4, 0.69 with @3) is dropped
    # above its score; its signature is a placed image, so the place is uncertain, not empty
    _, table, _, _, verdict = client.predict(
        handle_file(str(documents_dir / "contract-signed.pdf")), "bundled", t, api_name="/detect"
    )
    assert verdict.startswith("## Verdict: signed")
    score = table["data"][0][2]
    _, above, _, verdict = client.predict(min(0.95, round(score + 0.05, 2)), api_name="/threshold")
    assert not above["data"] and verdict.startswith("## Verdict: needs review"), verdict
    assert "an image placed on the place" in verdict


def test_demo_quarantines_broken_and_huge_files_like_the_cli(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from inkloop.api import detect

    for bad in (corrupt_pdf(tmp_path / "broken.pdf"), bomb_png(tmp_path / "huge.png")):
        gallery, table, files, status, verdict = client.predict(
            handle_file(str(bad)), "bundled", 0.2, api_name="/detect"
        )
        detect([str(bad)], tmp_path / f"cli-{bad.stem}", verdict=False)
        cli = (tmp_path / f"cli-{bad.stem}" / "quarantine.jsonl").read_text()
        reason = json.loads(cli.splitlines()[0])["reason"].replace(str(bad), bad.name)
        assert status.startswith("**Quarantined**") and reason in status, (status, reason)
        assert (gallery, files, verdict) == ([], [], "") and not table["data"]


def test_demo_reports_a_bad_model_reference(client, documents_dir: Path) -> None:
    from gradio_client import handle_file

    status = client.predict(
        handle_file(str(documents_dir / "letter.jpg")), "registry://nope@production", 0.2, api_name="/detect"
    )[3]
    assert status.startswith("**Model error:**")


def test_demo_examples_option_refuses_a_missing_folder(tmp_path: Path) -> None:
    inkloop = str(Path(sys.executable).with_name("inkloop"))
    p = subprocess.run(
        [inkloop, "demo", "--examples", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2 and "nope" in p.stderr and "not a folder" in p.stderr


def test_demo_renders_in_a_real_browser(
    demo_url: str, documents_dir: Path, tmp_path: Path, chromium: tuple[str, dict[str, str]]
) -> None:
    browser_path, browser_env = chromium
    shot = tmp_path / "demo.png"
    subprocess.run(
        [
            browser_path,
            "--headless",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,900",
            "--virtual-time-budget=15000",
            f"--screenshot={shot}",
            demo_url,
        ],
        check=True,
        timeout=120,
        capture_output=True,
        env=browser_env,
    )
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (900, 1280)
    assert pixels.std() > 10, "the screenshot is blank: the app did not render"
    # Playwright drives the same browser: an upload and Detect, a sample document, the slider
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"], env=browser_env)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(demo_url)
        page.locator("input[type=file]").first.set_input_files(str(documents_dir / "letter.jpg"))
        page.get_by_role("button", name="Detect").click()
        page.get_by_text("letter.jpg: 1 page(s)").wait_for(timeout=60_000)
        assert page.locator("table").filter(has_text="signature").count() >= 1
        page.screenshot(path=str(tmp_path / "result.png"))
        for name in sorted(p.name for p in documents_dir.iterdir()):  # every sample is offered
            page.get_by_text(name, exact=True).first.wait_for(timeout=10_000)
        page.get_by_text("contract-signed.pdf", exact=True).first.click()  # one click: detected
        page.get_by_text("contract-signed.pdf: 1 page(s)").wait_for(timeout=60_000)
        verdict = page.locator("#verdict")
        verdict.get_by_text("Verdict: signed").wait_for(timeout=10_000)
        assert verdict.get_by_text("signed (ink)").count() == 1
        image = page.locator("img[src*='/gradio_api/file=']").first
        image.wait_for(timeout=10_000)
        # the annotated page itself (1240 px wide at 150 dpi), loaded
        assert image.evaluate("img => img.complete && img.naturalWidth > 1000")
        page.screenshot(path=str(tmp_path / "example.png"), full_page=True)
        # the slider's number box: above the box's score (0.82 with @4), the box goes and the
        # verdict with it (to review: the signature image is still on the line)
        number = page.locator("input[type=number]").first
        number.fill("0.9")
        number.blur()
        verdict.get_by_text("Verdict: needs review").wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "threshold.png"), full_page=True)
        browser.close()


def test_the_verdict_reads_its_fields_digital_signatures_and_marks() -> None:
    """Evidence the sample documents do not carry (form fields, digital signatures, vendor marks)."""
    from inkloop.serving.demo import verdict_markdown
    from inkloop.verdict import (
        DigitalSignature,
        DocumentVerdict,
        Ink,
        PageEvidence,
        SignaturePlace,
        VendorMark,
    )

    sig = DigitalSignature("Client", "intact", signer="CN=Jane Doe", signed_at="2026-11-30T10:00:00Z")
    v = DocumentVerdict(
        doc_id="0" * 64,
        source="c.pdf",
        verdict="e_signed",
        reasons=["2 of 2 places signed", "e-signature vendor marks: DocuSign"],
        pages=[PageEvidence(0, True, "en")],
        places=[
            SignaturePlace(
                "p0-field-Client",
                "field",
                0,
                (1, 2, 3, 4),
                (1, 2, 3, 4),
                field_name="Client",
                digital=sig,
                status="signed_digital",
            ),
            SignaturePlace(
                "p0-label-0",
                "label",
                0,
                (1, 2, 3, 4),
                (1, 2, 3, 4),
                text="Signature",
                status="uncertain",
                reasons=["ink near the place but not on it"],
            ),
        ],
        ink=[Ink(0, 0.3, (0, 0, 1, 1), (0, 0, 1, 1), near="p0-label-0", ambiguous=True)],
        marks=[VendorMark("DocuSign", 0, "ABC-123")],
        digital_signatures=[sig],
        model_version="signature-detector@3",
        config={"threshold": 0.2, "band": 0.15},
    )
    text = verdict_markdown(v.to_dict(), 0.2, 0.2)
    assert text.startswith("## Verdict: e-signed\n")
    assert "| p0-field-Client | 1 | field `Client` | signed (digital signature) | none |" in text
    assert (
        "| p0-label-0 | 1 | label “Signature” | uncertain (ink near the place but not on it) | none |" in text
    )
    assert "**Ink (boxes scoring above 0.20): 1**: 0 on a signing place, 1 elsewhere; 1 ambiguous" in text
    assert "- field `Client`: intact, signer CN=Jane Doe, signed 2026-11-30T10:00:00Z" in text
    assert "**E-signing service marks:** DocuSign" in text
    assert "the model's operating threshold" in text
