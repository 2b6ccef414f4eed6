"""Model references: bundled, local path, hf:// from a pre-filled offline cache; checksums; errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inkloop.models.references import ModelCard, ModelError, card_from_onnx_metadata, parse_hf_ref
from inkloop.models.resolve import resolve_model


def test_bundled_model_loads_with_card_and_checksum():
    ref = resolve_model(None)
    assert ref.card.class_names == ["signature"]
    assert ref.card.sha256 and len(ref.card.sha256) == 64
    assert ref.card.preprocessing in ("letterbox", "stretch")
    assert ref.card.model_version.startswith("signature-detector@")
    assert resolve_model("bundled").path == ref.path


def _copy_bundled(dst: Path) -> Path:
    src = resolve_model(None).path
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst / "model.onnx")
    shutil.copy2(src.parent / "card.json", dst / "card.json")
    return dst / "model.onnx"


def test_local_path_and_corruption_refused(tmp_path):
    onnx = _copy_bundled(tmp_path / "m")
    assert resolve_model(onnx).card.sha256 == resolve_model(None).card.sha256
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        resolve_model(onnx)


def test_missing_and_wrong_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        resolve_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not onnx")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        resolve_model(bad)
    txt = tmp_path / "model.txt"
    txt.write_text("x")
    with pytest.raises(ModelError, match=r"expected an \.onnx file"):
        resolve_model(txt)


def test_card_from_ultralytics_metadata_without_card(tmp_path):
    onnx = _copy_bundled(tmp_path / "m")
    (tmp_path / "m" / "card.json").unlink()
    card = card_from_onnx_metadata(onnx)
    assert card.class_names == ["signature"]
    assert card.input_size == resolve_model(None).card.input_size


def _prefill_hf_cache(cache: Path, repo_id: str, files: dict[str, Path], commit: str = "a" * 40) -> None:
    """The layout huggingface_hub writes: refs/main → commit, snapshots/<commit>/<file>."""
    base = cache / f"models--{repo_id.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    for name, src in files.items():
        target = base / "snapshots" / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def test_hf_reference_served_offline_from_cache(tmp_path, monkeypatch):
    src = _copy_bundled(tmp_path / "src")
    cache = tmp_path / "hf"
    _prefill_hf_cache(
        cache,
        "inkloop/signatures",
        {"onnx/model.onnx": src, "onnx/model.card.json": src.parent / "card.json"},
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    ref = resolve_model("hf://inkloop/signatures/onnx/model.onnx@main")
    assert ref.ref == "hf://inkloop/signatures/onnx/model.onnx@main"
    assert ref.card.sha256 == resolve_model(None).card.sha256
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
        resolve_model("hf://inkloop/other-repo/model.onnx")


def test_parse_hf_ref():
    assert parse_hf_ref("hf://o/r/a/b.onnx@v2") == ("o/r", "a/b.onnx", "v2")
    assert parse_hf_ref("hf://o/r/m.onnx") == ("o/r", "m.onnx", None)
    with pytest.raises(ModelError, match="expected hf://"):
        parse_hf_ref("hf://only-owner")


def test_card_round_trip_and_unknown_fields(tmp_path):
    card = ModelCard(name="x", version="v1", class_names=["a"], metrics={"mAP50": 0.9})
    d = card.to_dict() | {"future_field": 1}
    back = ModelCard.from_dict(json.loads(json.dumps(d)))
    assert back.metrics == {"mAP50": 0.9} and back.extra["future_field"] == 1
    with pytest.raises(ModelError, match="preprocessing"):
        ModelCard.from_dict({"name": "x", "version": "1", "class_names": ["a"], "preprocessing": "crop"})
