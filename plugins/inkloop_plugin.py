"""Registers inkloop's extra links with Airflow when ``plugins/`` is the Airflow plugins folder.

(Installed as a package, the provider registers the same links through ``get_provider_info``.)
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from inkloop_provider.links.labelstudio import FiftyOneDatasetLink, LabelStudioProjectLink


class InkloopPlugin(AirflowPlugin):
    name = "inkloop"
    operator_extra_links = [LabelStudioProjectLink(), FiftyOneDatasetLink()]  # noqa: RUF012
