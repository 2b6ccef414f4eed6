"""tools/soup.py: the weight average of checkpoints, loadable by ultralytics; mismatches refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from soup import average_checkpoints, main

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
    with pytest.raises(ValueError, match=r"other\.pt: its layers or shapes differ"):
        average_checkpoints([a, other], tmp_path / "s.pt")
    with pytest.raises(ValueError, match="summing to 1"):
        average_checkpoints([a, a], tmp_path / "s.pt", weights=[0.5, 0.6])
    not_ckpt = tmp_path / "weights.pt"
    torch.save({"state": 1}, not_ckpt)
    assert main([str(a), str(not_ckpt), "--out", str(tmp_path / "s.pt")]) == 2
    assert "weights.pt: not an ultralytics checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "s.pt").exists()
