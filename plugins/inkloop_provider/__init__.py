"""inkloop's Airflow provider: hooks, operators, sensors and triggers over the inkloop SDK.

Registered through the ``apache_airflow_provider`` entry point (``pip install inkloop[airflow]``)
and also importable from a plain Airflow ``plugins/`` folder, which puts this package on the path.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (kept import-free: it runs at startup)."""
    return {
        "package-name": "inkloop",
        "name": "inkloop",
        "description": "Document-AI improvement loop: detect, review in Label Studio, curate in FiftyOne, "
        "retrain, gate and promote.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "inkloop",
                "external-doc-url": "https://pypi.org/project/inkloop/",
                "tags": ["ml"],
            },
            {"integration-name": "Label Studio", "external-doc-url": "https://labelstud.io/", "tags": ["ml"]},
            {
                "integration-name": "NVIDIA Triton",
                "external-doc-url": "https://github.com/triton-inference-server/server",
                "tags": ["ml"],
            },
        ],
        "hooks": [
            {"integration-name": "Label Studio", "python-modules": ["inkloop_provider.hooks.labelstudio"]},
            {"integration-name": "NVIDIA Triton", "python-modules": ["inkloop_provider.hooks.triton"]},
        ],
        "operators": [
            {
                "integration-name": "inkloop",
                "python-modules": ["inkloop_provider.operators.detect", "inkloop_provider.operators.results"],
            },
        ],
        "connection-types": [
            {
                "connection-type": "labelstudio",
                "hook-class-name": "inkloop_provider.hooks.labelstudio.LabelStudioHook",
                "hook-name": "Label Studio",
            },
            {
                "connection-type": "triton",
                "hook-class-name": "inkloop_provider.hooks.triton.TritonHook",
                "hook-name": "NVIDIA Triton (inkloop)",
            },
        ],
    }
