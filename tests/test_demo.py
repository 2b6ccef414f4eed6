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
    from inkloop.devservers.ports import free_port

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


def test_demo_detects_a_pdf_and_offers_the_downloads(client, documents_dir: Path) -> None:
    from gradio_client import handle_file

    gallery, table, files, status = client.predict(
        handle_file(str(documents_dir / "scanned letters.pdf")), "bundled", api_name="/detect"
    )
    from inkloop.models.resolve import resolve_model

    assert "4 page(s)" in status and resolve_model(None).card.model_version in status
    assert table["headers"] == ["page", "label", "score", "x0", "y0", "x1", "y1"]
    assert {row[0] for row in table["data"]} == {1, 2, 3, 4} and len(table["data"]) >= 4
    assert len(gallery) == 4 and all(Path(g["image"]).is_file() for g in gallery)
    names = sorted(Path(f).name for f in files)
    assert names[:2] == ["crops.zip", "results.json"]
    assert names[2].startswith("scanned_letters") and names[2].endswith(".pdf")  # the annotated PDF


def test_demo_quarantines_broken_and_huge_files_like_the_cli(client, tmp_path: Path) -> None:
    from gradio_client import handle_file

    from inkloop.detection.pipeline import detect

    for bad in (corrupt_pdf(tmp_path / "broken.pdf"), bomb_png(tmp_path / "huge.png")):
        gallery, table, files, status = client.predict(handle_file(str(bad)), "bundled", api_name="/detect")
        detect([str(bad)], tmp_path / f"cli-{bad.stem}")
        cli = (tmp_path / f"cli-{bad.stem}" / "quarantine.jsonl").read_text()
        reason = json.loads(cli.splitlines()[0])["reason"].replace(str(bad), bad.name)
        assert status.startswith("**Quarantined**") and reason in status, (status, reason)
        assert (gallery, files) == ([], []) and not table["data"]


def test_demo_reports_a_bad_model_reference(client, documents_dir: Path) -> None:
    from gradio_client import handle_file

    *_, status = client.predict(
        handle_file(str(documents_dir / "letter.jpg")), "registry://nope@production", api_name="/detect"
    )
    assert status.startswith("**Model error:**")


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
    # Playwright drives the same browser: upload a document, press Detect, read the table
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"], env=browser_env)
        page = browser.new_page()
        page.goto(demo_url)
        page.locator("input[type=file]").first.set_input_files(str(documents_dir / "letter.jpg"))
        page.get_by_role("button", name="Detect").click()
        page.get_by_text("letter.jpg: 1 page(s)").wait_for(timeout=60_000)
        assert page.locator("table").filter(has_text="signature").count() >= 1
        page.screenshot(path=str(tmp_path / "result.png"))
        browser.close()
