"""Shared fixtures: paths to the committed sample documents and pages, offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

# Nothing in the test suite may reach a hub: fail fast instead of waiting for timeouts.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / ".cache" / "ultralytics"))


@pytest.fixture(scope="session")
def documents_dir() -> Path:
    return FIXTURES / "documents"


@pytest.fixture(scope="session")
def pages_dir() -> Path:
    return FIXTURES / "pages"
