"""The commands' one way to make a rich console.

With ``--json``, stdout carries only the JSON document and people's output goes to stderr. When
the output is not a terminal (a log file, CI, an Airflow task's log) lines are not wrapped: a path
in an error message must stay one searchable line, and tables get a wide page.
"""

from __future__ import annotations

import sys
from typing import Any

#: Width of tables when the output is not a terminal.
LOG_WIDTH = 150


def make_console(json_mode: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if json_mode else sys.stdout
    if stream.isatty():
        return Console(stderr=json_mode)
    return Console(stderr=json_mode, width=LOG_WIDTH, soft_wrap=True)
