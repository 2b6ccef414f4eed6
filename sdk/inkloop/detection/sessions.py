"""The part of onnxruntime's ``InferenceSession`` the detector uses, for backends that are not
onnxruntime (OpenVINO Runtime, a Triton server): they fill in ``_inputs``, ``_outputs``, ``_meta``
and ``provider`` and implement ``run``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Arg:
    """An input or output: its name and shape (ints, or names for dynamic dimensions)."""

    name: str
    shape: list[Any]


@dataclass(frozen=True)
class Meta:
    custom_metadata_map: dict[str, str] = field(default_factory=dict)


class SessionLike:
    provider = ""
    _inputs: list[Arg]
    _outputs: list[Arg]
    _meta: Meta

    def get_inputs(self) -> list[Arg]:
        return self._inputs

    def get_outputs(self) -> list[Arg]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [self.provider]

    def get_modelmeta(self) -> Meta:
        return self._meta
