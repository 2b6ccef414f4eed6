"""A model served by Triton (KServe v2) behind the part of onnxruntime's session interface the
detector uses, so ``triton://host:port/model`` works wherever ``--model`` does.

The pipeline still opens, renders and preprocesses pages locally and decodes the raw head output
locally (thresholds, NMS, mapping back to the page): only the forward pass goes to the server, so
the detections are those of a local session. The card (class names, input size, preprocessing,
thresholds) comes from the model's config on the server (``parameters``, written by
``inkloop serve``). References:

- ``triton://host:port/model`` — HTTP;
- ``triton+grpc://host:port/model`` — gRPC (the server's gRPC port).

A server that is down or slow is retried with backoff (:class:`Retry`); after the last attempt
:class:`InferenceUnavailable` names the server, and the pipeline quarantines every document of the
batch with that reason.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from inkloop.detection.sessions import Arg, Meta, SessionLike
from inkloop.models.references import ModelCard, ModelError, ModelRef
from inkloop.retry import Backoff, retry

#: What :meth:`TritonSession.get_providers` reports (not a CPU backend: batches go to the server).
PROVIDER = "Triton"
#: Model config ``parameters`` carrying the card and the ONNX metadata (base64 JSON), written by
#: ``inkloop serve`` and by the model repository export (:mod:`inkloop.serving`).
CARD_PARAMETER = "inkloop-card"
METADATA_PARAMETER = "inkloop-onnx-metadata"
TOKEN_ENV = "INKLOOP_TRITON_TOKEN"


class InferenceUnavailable(ModelError):
    """The inference server did not answer after the retries; ``server`` names it."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"inference server {server} unavailable: {reason}")
        self.server = server
        self.reason = reason


@dataclass(frozen=True)
class Retry:
    """Attempts per request and the backoff between them (doubling from ``backoff`` seconds)."""

    attempts: int = 4
    backoff: float = 0.5
    timeout: float = 30.0


@dataclass(frozen=True)
class TritonRef:
    url: str  # host:port
    model: str
    protocol: str  # "http" or "grpc"

    @property
    def server(self) -> str:
        return f"{'grpc' if self.protocol == 'grpc' else 'http'}://{self.url}"


def parse_triton_ref(ref: str) -> TritonRef:
    """``triton://host:port/model`` (HTTP) or ``triton+grpc://host:port/model`` → its parts."""
    parts = urlsplit(ref)
    if parts.scheme not in ("triton", "triton+http", "triton+grpc"):
        raise ModelError(f"not a Triton reference: {ref!r}")
    model = parts.path.strip("/")
    if not parts.netloc or not model or "/" in model:
        raise ModelError(f"bad Triton reference {ref!r}; expected triton://host:port/model")
    return TritonRef(parts.netloc, model, "grpc" if parts.scheme == "triton+grpc" else "http")


def encode_parameter(value: Any) -> str:
    """JSON, base64-encoded: config.pbtxt string values stay free of quotes and newlines."""
    return base64.b64encode(json.dumps(value).encode()).decode()


def _decode_parameter(params: dict[str, Any], key: str) -> Any:
    value = params.get(key)
    if value is None:
        return None
    text = value.get("string_value") if isinstance(value, dict) else getattr(value, "string_value", value)
    return json.loads(base64.b64decode(text))


class TritonSession(SessionLike):
    """``run``, ``get_inputs``, ``get_outputs``, ``get_providers``, ``get_modelmeta`` over Triton."""

    provider = PROVIDER

    def __init__(self, ref: str, token: str | None = None, retry: Retry | None = None) -> None:
        self.ref = parse_triton_ref(ref)
        self.retry = retry or Retry()
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self._local = threading.local()
        config = self._call(lambda c: self._config(c), "reading the model config")
        params = config.get("parameters", {})
        card = _decode_parameter(params, CARD_PARAMETER)
        if card is None:
            raise ModelError(
                f"{self.ref.server}/{self.ref.model}: the model config has no {CARD_PARAMETER!r} parameter "
                "(serve the model with `inkloop serve`, or add the card to its config.pbtxt)"
            )
        self.card = ModelCard.from_dict(card)
        self._meta = Meta(
            {k: str(v) for k, v in (_decode_parameter(params, METADATA_PARAMETER) or {}).items()}
        )
        batch = int(config.get("max_batch_size", 0))
        lead: list[Any] = ["batch"] if batch > 0 else []
        self._inputs = [Arg(i["name"], lead + _dims(i["dims"])) for i in config["input"]]
        self._outputs = [Arg(o["name"], lead + _dims(o["dims"])) for o in config["output"]]
        self.max_batch_size = batch

    def run(self, output_names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        ((name, array),) = feed.items()
        array = np.ascontiguousarray(array, dtype=np.float32)
        if self.max_batch_size and len(array) > self.max_batch_size:  # the server's batch limit
            step = self.max_batch_size
            parts = [self.run(output_names, {name: array[i : i + step]}) for i in range(0, len(array), step)]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        return self._call(lambda c: self._infer(c, name, array), "inference")

    # -- internals ------------------------------------------------------------------------------
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)  # tritonclient's clients are not thread-safe
        if client is None:
            if self.ref.protocol == "grpc":
                import tritonclient.grpc as tc
            else:
                import tritonclient.http as tc  # type: ignore[no-redef]
            kwargs: dict[str, Any] = {"url": self.ref.url}
            if self.ref.protocol == "http":
                kwargs.update(connection_timeout=self.retry.timeout, network_timeout=self.retry.timeout)
            client = self._local.client = tc.InferenceServerClient(**kwargs)
        return client

    def _headers(self) -> dict[str, str] | None:
        return {"authorization": f"Bearer {self.token}"} if self.token else None

    def _config(self, client: Any) -> dict[str, Any]:
        if self.ref.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            cfg = client.get_model_config(self.ref.model, headers=self._headers())
            return MessageToDict(cfg.config, preserving_proto_field_name=True)
        return client.get_model_config(self.ref.model, headers=self._headers())

    def _infer(self, client: Any, name: str, array: np.ndarray) -> list[np.ndarray]:
        if self.ref.protocol == "grpc":
            import tritonclient.grpc as tc
        else:
            import tritonclient.http as tc  # type: ignore[no-redef]
        inp = tc.InferInput(name, list(array.shape), "FP32")
        inp.set_data_from_numpy(array, **({"binary_data": True} if self.ref.protocol == "http" else {}))
        kwargs: dict[str, Any] = {"headers": self._headers()}
        if self.ref.protocol == "grpc":
            kwargs["client_timeout"] = self.retry.timeout
        result = client.infer(self.ref.model, [inp], **kwargs)
        return [result.as_numpy(o.name) for o in self._outputs]

    def _call(self, fn: Any, what: str) -> Any:
        """``fn(client)`` with retries and doubling backoff (:func:`inkloop.retry.retry`); a model
        error (missing model, bad input) is not retried; the last failure becomes
        :class:`InferenceUnavailable`."""

        def drop_client(_attempt: int, _exc: Exception, _pause: float) -> None:
            self._local.client = None  # a broken connection is not reused

        backoff = Backoff(attempts=self.retry.attempts, first=self.retry.backoff, cap=float("inf"))
        try:
            return retry(
                lambda: fn(self._client()),
                backoff,
                retryable=lambda exc: not _not_retryable(_message(exc)),
                on_retry=drop_client,
            )
        except Exception as exc:
            msg = _message(exc)
            if _not_retryable(msg):
                raise ModelError(f"{self.ref.server}/{self.ref.model}: {what} failed: {msg}") from exc
            self._local.client = None
            # retry() gave up after every try (Backoff tries once even with attempts < 1)
            tries = max(1, self.retry.attempts)
            last = f"{what} failed after {tries} attempt(s): {exc.__class__.__name__}: {msg}"
        raise InferenceUnavailable(self.ref.server, last)


def _message(exc: BaseException) -> str:
    return str(exc) or exc.__class__.__name__


def _not_retryable(msg: str) -> bool:
    low = msg.lower()
    return any(s in low for s in ("unknown model", "not found", "unexpected shape", "unexpected datatype"))


def _dims(dims: list[Any]) -> list[Any]:
    return [int(d) if int(d) >= 0 else f"d{i}" for i, d in enumerate(dims)]


def triton_model(
    ref: str, token: str | None = None, retry: Retry | None = None
) -> tuple[TritonSession, ModelRef]:
    """The session and a :class:`ModelRef` (its ``path`` is the reference; there is no local file)."""
    session = TritonSession(ref, token=token, retry=retry)
    return session, ModelRef(path=Path(ref), card=session.card, ref=ref)
