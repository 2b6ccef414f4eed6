"""Nothing leaves the machine: the usage-data switches of every library inkloop runs, off by default.

Several libraries in inkloop's stack send usage data or look hosts up on their own:
onnxruntime ≥ 1.32 (``mobile.events.data.microsoft.com``, from any long-lived process), FiftyOne,
Gradio and the Hugging Face Hub client, MLflow, ultralytics (Google Analytics, plus DNS look-ups
of ``one.one.one.one``/``dns.google`` at import to decide whether it is online) and OpenVINO's
model conversion (Google Analytics, unless a consent file says no or a CI is detected).

:func:`apply` runs when ``inkloop`` is imported and sets each switch with ``os.environ.setdefault``
before the libraries read it, so a value the user set explicitly wins. ``INKLOOP_ALLOW_TELEMETRY=1``
turns the whole module off (nothing is set). Processes inkloop starts inherit the environment; the
ones that get a cleaned environment (the Label Studio server) get :func:`child_env`.
What cannot be switched by the environment alone is scoped to inkloop's own calls:
:func:`quiet_openvino` around OpenVINO's first import (:func:`import_openvino`) and its
conversions. ultralytics is imported only after ``inkloop.lifecycle.training.offline_env`` sets
``YOLO_OFFLINE=1`` (no analytics, no online check; hub downloads still work). See
``docs/privacy.md``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from types import ModuleType

#: The escape hatch: set to 1/true/yes and inkloop leaves every switch below alone.
ALLOW_ENV = "INKLOOP_ALLOW_TELEMETRY"

#: Environment switches, each the library's own documented opt-out.
DEFAULTS: dict[str, str] = {
    # onnxruntime: ETW/1DS telemetry from long-lived processes; read when a session is created.
    "ORT_DISABLE_TELEMETRY": "1",
    # FiftyOne: usage tracking of the library and the App.
    "FIFTYONE_DO_NOT_TRACK": "true",
    # Gradio server analytics; the Hub client (used by gradio_client and huggingface_hub).
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # MLflow 3 client telemetry (honours DO_NOT_TRACK too).
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # Label Studio (its server, also set explicitly by inkloop.devservers): analytics, version check.
    "COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
    # Airflow < 3.3's usage-data collection (Scarf); 3.3 has none. Harmless where unknown.
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    "SCARF_ANALYTICS": "false",
    # The cross-tool convention (consoledonottrack.com) that several of the above also read.
    "DO_NOT_TRACK": "1",
}


def telemetry_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """True when the user asked inkloop to leave usage-data switches alone."""
    value = (os.environ if environ is None else environ).get(ALLOW_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def apply(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set every switch not already set in ``environ`` (default ``os.environ``); returns what was set."""
    env = os.environ if environ is None else environ
    if telemetry_allowed(env):
        return {}
    added = {k: v for k, v in DEFAULTS.items() if k not in env}
    env.update(added)
    if environ is None and "ORT_DISABLE_TELEMETRY" in added and "onnxruntime" in sys.modules:
        warnings.warn(
            "onnxruntime was imported before inkloop (`import pymupdf` imports it too) and decided "
            "then to send usage data from this process: import inkloop first, or set "
            "ORT_DISABLE_TELEMETRY=1 before starting Python",
            RuntimeWarning,
            stacklevel=2,
        )
    return added


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with the switches added, for a child process."""
    env = dict(os.environ if base is None else base)
    apply(env)
    return env


@contextmanager
def quiet_openvino() -> Iterator[None]:
    """Around anything that makes or remakes OpenVINO's telemetry object: no Google Analytics events.

    OpenVINO makes that object when the package is first imported in a process (``import
    openvino`` loads ``openvino.tools.ovc``, which sends an ``import`` event at once), and its
    converter remakes it for each conversion. Each time it decides to send unless
    ``~/intel/openvino_telemetry`` holds ``0`` (written by ``opt_in_out --opt_out``) or it runs in a
    CI (``CI=true``), and when it will send it also writes a client id (``~/intel/openvino_ga_cid``).
    The decision lasts as long as the object, so the first import and every conversion must run in
    this scope: :func:`import_openvino` for inkloop's own use, and inkloop's ultralytics calls that
    may import or convert (the export, ``AutoBackend`` on an IR). inkloop writes nothing in the
    user's home: it sets ``CI=true`` for the duration of the call only, unless ``CI`` is already set
    or telemetry is allowed.
    """
    if telemetry_allowed() or "CI" in os.environ:
        yield
        return
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        os.environ.pop("CI", None)


def import_openvino() -> ModuleType:
    """``import openvino`` with its usage-data event off (:func:`quiet_openvino`): never import it bare."""
    with quiet_openvino():
        import openvino
    return openvino
