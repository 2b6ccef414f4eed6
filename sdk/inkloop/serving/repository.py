"""A Triton model repository for a stock Triton server (its onnxruntime backend).

``<dir>/<name>/config.pbtxt``, ``<dir>/<name>/1/model.onnx`` and ``<dir>/<name>/card.json``; the
config declares the ONNX file's input and output names and shapes, a dynamic batch dimension and
dynamic batching, and carries the card in ``parameters`` (``inkloop-card``, base64 JSON), so a
``triton://`` client reads the card from this server exactly as from ``inkloop serve``. Only the
network is exported: the page-bytes model of ``inkloop serve`` runs inkloop's Python code, which a
stock Triton has no backend for (the pipeline renders and decodes on the client instead).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from inkloop.detection.triton_backend import CARD_PARAMETER, METADATA_PARAMETER, encode_parameter
from inkloop.models.references import ModelRef

_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(double)": "TYPE_FP64",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
}


def onnx_signature(path: Path) -> dict[str, Any]:
    """Inputs and outputs (name, Triton type, dims with -1 for dynamic) and the ONNX metadata."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def io(args: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": a.name,
                "data_type": _TYPES.get(a.type, "TYPE_FP32"),
                "dims": [d if isinstance(d, int) else -1 for d in a.shape],
            }
            for a in args
        ]

    return {
        "inputs": io(sess.get_inputs()),
        "outputs": io(sess.get_outputs()),
        "metadata": dict(sess.get_modelmeta().custom_metadata_map),
    }


def config_pbtxt(name: str, sig: dict[str, Any], card: dict[str, Any], max_batch_size: int = 8) -> str:
    """The text-format ``ModelConfig`` for Triton's onnxruntime backend.

    The ONNX batch dimension is dropped from ``dims`` (Triton adds it back with ``max_batch_size``);
    a model whose batch dimension is fixed gets ``max_batch_size: 0`` and its full shapes.
    """
    dynamic = all(t["dims"] and t["dims"][0] == -1 for t in sig["inputs"] + sig["outputs"])

    def block(kind: str, tensors: list[dict[str, Any]]) -> str:
        rows = []
        for t in tensors:
            dims = t["dims"][1:] if dynamic else t["dims"]
            rows.append(
                f'  {{\n    name: "{t["name"]}"\n    data_type: {t["data_type"]}\n'
                f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}"
            )
        return f"{kind} [\n" + ",\n".join(rows) + "\n]\n"

    out = [
        f'name: "{name}"\n',
        'backend: "onnxruntime"\n',
        f"max_batch_size: {max_batch_size if dynamic else 0}\n",
        block("input", sig["inputs"]),
        block("output", sig["outputs"]),
    ]
    if dynamic:
        out.append("dynamic_batching {\n  max_queue_delay_microseconds: 2000\n}\n")
    out.append("instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n")
    for key, value in ((CARD_PARAMETER, card), (METADATA_PARAMETER, sig["metadata"])):
        text = encode_parameter(value)
        out.append(f'parameters {{\n  key: "{key}"\n  value {{\n    string_value: "{text}"\n  }}\n}}\n')
    return "".join(out)


def write_triton_repository(model: ModelRef, directory: str | Path, max_batch_size: int = 8) -> Path:
    """Write ``model`` as ``<directory>/<card name>/``; returns that model folder."""
    card = model.card.to_dict()
    folder = Path(directory) / model.card.name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model.path, folder / "1" / "model.onnx")
    sig = onnx_signature(model.path)
    (folder / "config.pbtxt").write_text(config_pbtxt(model.card.name, sig, card, max_batch_size))
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return folder
