"""Model references and model cards: find an ONNX file, check it, and say how to feed it.

A model is an ONNX file plus a card (JSON). References accepted everywhere a model is asked for:

- ``None`` / ``"bundled"``: the model shipped inside the package (``inkloop/assets``);
- a local path to an ``.onnx`` file (its card is ``<stem>.card.json`` or ``card.json`` beside it);
- ``hf://owner/repo/path/file.onnx@revision``: fetched with huggingface_hub (cached, honours
  ``HF_HUB_OFFLINE``);
- ``registry://name@alias`` or ``registry://name@v7``: a version in the model registry;
- ``triton://host:port/model`` (``triton+grpc://`` for gRPC): a model on a Triton server, inferred
  remotely (:mod:`inkloop.detection.triton_backend`; its card comes from the server).

Without a card, class names and input size come from the metadata ultralytics writes into the
ONNX file, so any ultralytics export works as is.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from inkloop import storage
from inkloop.documents.hashing import sha256_file

Preprocessing = Literal["letterbox", "stretch"]

BUNDLED_NAME = "signature-detector"

#: Schemes of models served remotely: no local file, the detector sends its inputs to the server.
TRITON_SCHEMES = ("triton://", "triton+http://", "triton+grpc://")


def is_triton_ref(ref: object) -> bool:
    return isinstance(ref, str) and ref.startswith(TRITON_SCHEMES)


class ModelError(RuntimeError):
    """A model reference that cannot be resolved, read or trusted."""


@dataclass(frozen=True)
class Thresholds:
    """The operating score threshold of each page domain, and the one for every other page.

    Why per domain: a detector's scores are not calibrated alike on scans and on born-digital
    pages. ``signature-detector@4`` keeps precision 0.89 on clean digital pages down to a score
    of 0.15, where scans have fallen to 0.80; one threshold for both either drops a tenth of
    the digital signatures or floods scans with false boxes. A page's domain is known before
    the model runs (:mod:`inkloop.documents.domain`), so each page is cut at its own domain's
    threshold. ``default`` covers pages of any other domain, and images with none.
    """

    default: float
    by_domain: Mapping[str, float] = field(default_factory=dict)

    def of(self, domain: str | None) -> float:
        """The threshold a page of ``domain`` is cut at."""
        return float(self.by_domain.get(domain, self.default)) if domain is not None else self.default

    @property
    def floor(self) -> float:
        """The lowest of them: what a detector decodes down to before each page is cut."""
        return min([self.default, *self.by_domain.values()])

    @classmethod
    def of_value(cls, value: float | Thresholds) -> Thresholds:
        """``value`` itself, or one threshold for every page."""
        return value if isinstance(value, Thresholds) else cls(float(value))

    def to_dict(self) -> dict[str, Any]:
        return {"default": self.default, "by_domain": dict(self.by_domain)}


@dataclass
class ModelCard:
    """What a model needs at inference time, and what we know about where it came from."""

    name: str
    version: str
    class_names: list[str]
    input_size: int = 640
    preprocessing: Preprocessing = "letterbox"
    conf_threshold: float = 0.25
    iou_threshold: float = 0.7
    #: Operating thresholds of page domains that differ from ``conf_threshold`` (:class:`Thresholds`).
    domain_thresholds: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None
    data_version: str | None = None
    parent_version: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    license: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        """The label written on every result: ``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def thresholds(self) -> Thresholds:
        """Where a page of each domain is cut: ``conf_threshold`` unless its domain has its own."""
        return Thresholds(self.conf_threshold, dict(self.domain_thresholds))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = {k: v for k, v in d.items() if k not in cls.__dataclass_fields__}
        card = cls(**known)
        card.extra.update(unknown)
        if card.preprocessing not in ("letterbox", "stretch"):
            raise ModelError(f"unknown preprocessing {card.preprocessing!r} in card of {card.name}")
        dt = card.domain_thresholds
        if not isinstance(dt, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and 0.0 <= v < 1.0 for k, v in dt.items()
        ):
            raise ModelError(
                f"card of {card.name}: domain_thresholds must map domains to scores in [0, 1), not {dt!r}"
            )
        card.domain_thresholds = {k: float(v) for k, v in dt.items()}
        return card

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the card as JSON, all or nothing (a reader never sees half a card)."""
        storage.write_local_atomic(os.fspath(path), (json.dumps(self.to_dict(), indent=2) + "\n").encode())


@dataclass
class ModelRef:
    """A resolved model: a local ONNX path and its card."""

    path: Path
    card: ModelCard
    ref: str


def bundled_model_path() -> Path:
    """The ONNX file shipped with the package."""
    return Path(str(resources.files("inkloop") / "assets" / BUNDLED_NAME / "model.onnx"))


def card_from_onnx_metadata(path: Path) -> ModelCard:
    """Build a card from the metadata ultralytics embeds in exported ONNX files."""
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        raise ModelError(f"{path}: not a readable ONNX model ({exc.__class__.__name__}: {exc})") from exc
    meta = sess.get_modelmeta().custom_metadata_map
    names: list[str]
    if "names" in meta:
        parsed = ast.literal_eval(meta["names"])
        names = [parsed[k] for k in sorted(parsed)] if isinstance(parsed, dict) else list(parsed)
    else:
        shape = sess.get_outputs()[0].shape
        nc = shape[1] - 4 if isinstance(shape[1], int) else 1
        names = [f"class{i}" for i in range(nc)]
    imgsz = 640
    if "imgsz" in meta:
        sz = ast.literal_eval(meta["imgsz"])
        imgsz = int(max(sz)) if isinstance(sz, list | tuple) else int(sz)
    else:
        shape = sess.get_inputs()[0].shape
        if isinstance(shape[-1], int):
            imgsz = int(shape[-1])
    return ModelCard(
        name=path.stem,
        version=meta.get("version", "0") if "inkloop_version" not in meta else meta["inkloop_version"],
        class_names=names,
        input_size=imgsz,
        preprocessing="letterbox",
    )


def _find_card(onnx_path: Path) -> Path | None:
    for cand in (onnx_path.with_suffix(".card.json"), onnx_path.parent / "card.json"):
        if cand.is_file():
            return cand
    return None


def load_local(path: str | os.PathLike[str], ref: str | None = None, verify: bool = True) -> ModelRef:
    """Load a local ONNX file and its card; refuse a file whose SHA-256 differs from the card's."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file not found: {p}")
    if not p.is_file():
        raise ModelError(f"model path is not a file: {p}")
    if p.suffix.lower() != ".onnx":
        raise ModelError(f"{p}: expected an .onnx file (export .pt models with `inkloop export`)")
    card_path = _find_card(p)
    if card_path is not None:
        try:
            card = ModelCard.from_dict(json.loads(card_path.read_text()))
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{card_path}: invalid model card ({exc})") from exc
    else:
        card = card_from_onnx_metadata(p)
    if verify and card.sha256:
        actual = sha256_file(p)
        if actual != card.sha256:
            raise ModelError(
                f"{p}: SHA-256 mismatch (card says {card.sha256[:12]}…, file is {actual[:12]}…); "
                "the file is corrupt or not the model its card describes"
            )
    return ModelRef(path=p, card=card, ref=ref or str(p))


def parse_hf_ref(ref: str) -> tuple[str, str, str | None]:
    """``hf://owner/repo/path/file.onnx@rev`` → (repo_id, filename, revision)."""
    body = ref.removeprefix("hf://")
    rev: str | None = None
    if "@" in body:
        body, rev = body.rsplit("@", 1)
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise ModelError(f"bad Hugging Face reference {ref!r}; expected hf://owner/repo/file.onnx[@revision]")
    return "/".join(parts[:2]), "/".join(parts[2:]), rev


def load_hf(ref: str, cache_dir: str | None = None) -> ModelRef:
    """Download (or find in the cache) a model on the Hugging Face Hub, plus its card if any."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    repo_id, filename, revision = parse_hf_ref(ref)
    try:
        local = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir)
    except Exception as exc:  # offline, gated, missing: all deserve one clear message
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set and the file is not in the cache)" if offline else ""
        raise ModelError(f"cannot fetch {ref}{hint}: {exc.__class__.__name__}: {exc}") from exc
    card_name = str(Path(filename).with_suffix(".card.json"))
    for name in (card_name, str(Path(filename).parent / "card.json").lstrip("./")):
        try:
            hf_hub_download(repo_id, name, revision=revision, cache_dir=cache_dir)
            break
        except (EntryNotFoundError, Exception):
            continue
    return load_local(local, ref=ref)
