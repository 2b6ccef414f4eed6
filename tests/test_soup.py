"""The weight average of checkpoints (inkloop.lifecycle.soup, and tools/soup.py that scores soups):
loadable by ultralytics; mismatches refused; a fine-tune blended with its own parent only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from soup import main

from inkloop.lifecycle.soup import average_checkpoints, blend_with_parent
from inkloop.models.references import ModelError

BUNDLED_PT = (
    Path(__file__).resolve().parents[1] / "sdk" / "inkloop" / "assets" / "signature-detector" / "model.pt"
)


def _shifted_copy(out: Path, delta: float) -> Path:
    """The bundled checkpoint with every floating-point tensor moved by ``delta``."""
    ckpt = torch.load(BUNDLED_PT, map_location="cpu", weights_only=False)
    net = ckpt["model"].float()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(delta)
    ckpt["model"] = net.half()
    torch.save(ckpt, out)
    return out


def test_the_soup_is_the_weighted_mean_and_ultralytics_loads_it(tmp_path):
    a, b = _shifted_copy(tmp_path / "a.pt", 0.0), _shifted_copy(tmp_path / "b.pt", 0.5)
    out = average_checkpoints([a, b], tmp_path / "soup.pt", weights=[0.75, 0.25])
    sa = torch.load(a, weights_only=False)["model"].float().state_dict()
    soup = torch.load(out, weights_only=False)
    assert soup["soup"] == [str(a), str(b)] and soup["optimizer"] is None
    ss = soup["model"].float().state_dict()
    key = next(k for k, v in sa.items() if v.is_floating_point() and v.numel() > 100)
    # 0.75·w + 0.25·(w + 0.5) = w + 0.125, to half precision
    assert torch.allclose(ss[key], sa[key] + 0.125, atol=2e-2)
    from ultralytics import YOLO

    model = YOLO(str(out))
    assert model.names == {0: "signature"}
    y = model.model.float().eval()(torch.zeros(1, 3, 64, 64))
    assert y[0].shape[:2] == (1, 5)  # 4 box values + 1 class per anchor


def test_mismatched_networks_and_bad_weights_are_refused(tmp_path, capsys):
    a = _shifted_copy(tmp_path / "a.pt", 0.0)
    other = tmp_path / "other.pt"
    torch.save({"model": torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))}, other)
    with pytest.raises(ModelError, match=r"other\.pt: its layers or shapes differ"):
        average_checkpoints([a, other], tmp_path / "s.pt")
    with pytest.raises(ModelError, match="summing to 1"):
        average_checkpoints([a, a], tmp_path / "s.pt", weights=[0.5, 0.6])
    not_ckpt = tmp_path / "weights.pt"
    torch.save({"state": 1}, not_ckpt)
    assert main([str(a), str(not_ckpt), "--out", str(tmp_path / "s.pt")]) == 2
    assert "weights.pt: not an ultralytics checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()


def test_a_fine_tune_blends_with_the_parent_it_started_from_only(tmp_path):
    parent, tuned = _shifted_copy(tmp_path / "parent.pt", 0.0), _shifted_copy(tmp_path / "tuned.pt", 0.4)
    from inkloop.documents.hashing import sha256_file

    record = blend_with_parent(tuned, parent, 0.5, tmp_path / "blend.pt", parent_sha256=sha256_file(parent))
    assert [(i["name"], i["weight"]) for i in record["of"]] == [("parent", 0.5), ("fine-tune", 0.5)]
    assert record["of"][0]["sha256"] == sha256_file(parent)
    sp = torch.load(parent, weights_only=False)["model"].float().state_dict()
    sb = torch.load(tmp_path / "blend.pt", weights_only=False)["model"].float().state_dict()
    key = next(k for k, v in sp.items() if v.is_floating_point() and v.numel() > 100)
    assert torch.allclose(sb[key], sp[key] + 0.2, atol=2e-2)  # half-way between w and w + 0.4
    with pytest.raises(ModelError, match="not the parent the run started from"):
        blend_with_parent(tuned, parent, 0.5, tmp_path / "b2.pt", parent_sha256="0" * 64)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ModelError, match="between 0 and 1"):
            blend_with_parent(tuned, parent, bad, tmp_path / "b3.pt")
    assert not (tmp_path / "b2.pt").exists() and not (tmp_path / "b3.pt").exists()


def test_export_blends_with_the_parent_fetched_from_the_registry_when_its_file_is_gone(tmp_path):
    """A worker exporting a run another machine trained has no copy of the parent checkpoint the
    run recorded: the export fetches it from the run's registry, checks its hash, and blends."""
    from inkloop.documents.hashing import sha256_file
    from inkloop.lifecycle.promotion import export_candidate
    from inkloop.models.references import load_local
    from inkloop.models.registry import Registry

    bundled = BUNDLED_PT.parent
    reg = Registry(str(tmp_path / "registry"))
    version = reg.register(
        "sig", bundled / "model.onnx", load_local(bundled / "model.onnx").card, pt_path=BUNDLED_PT
    )
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    _shifted_copy(run / "weights" / "best.pt", 0.01)
    parent = {"registry": reg.url, "name": "sig", "version": version, "sha256": sha256_file(BUNDLED_PT)}
    gone = tmp_path / "other-machine" / "model.pt"  # where the training machine had the parent
    (run / "recipe.json").write_text(
        json.dumps({"name": "finetune-v1", "model": str(gone), "parent": parent})
    )

    result = export_candidate(run, tmp_path / "export", register=False, formats=(), parent_weight=0.5)
    soup = result.card.recipe["soup"]
    assert soup["of"][0]["sha256"] == parent["sha256"] and soup["of"][0]["weight"] == 0.5
    assert soup["of"][1]["sha256"] == sha256_file(run / "weights" / "best.pt")
    assert (run / "weights" / "best-blend-0.5.pt").is_file()

    parent["sha256"] = "f" * 64  # the registry's file is not the parent the run started from
    (run / "recipe.json").write_text(
        json.dumps({"name": "finetune-v1", "model": str(gone), "parent": parent})
    )
    with pytest.raises(ModelError, match="not the parent the run started from"):
        export_candidate(run, tmp_path / "export2", register=False, formats=(), parent_weight=0.5)
