"""Commands under their old names: each keeps working, with a deprecation warning naming the new one.

Why: scripts, DAG docs and people's fingers use the old names (``inkloop promote``, ``inkloop
sync-runs``, ``inkloop curate app``); a rename that broke them would cost more than the clearer
name is worth. The old name runs the very same command (same options, same exit codes, same
``--json`` document on stdout); the warning goes to stderr, so ``--json`` output stays clean, and is
raised as a :class:`DeprecationWarning` too, for Python callers that run the app. Old names are
hidden from ``--help``, which lists only the names that explain themselves.

=====================  ==============================  ==========================================
old name               new name                        why
=====================  ==============================  ==========================================
``promote``            ``models promote``              one group for what moves an alias
                                                       (``models rollback`` was there already)
``sync-runs``          ``sync-mlflow-runs``            the runs it copies are MLflow's
``curate app``         ``curate open-app``             it opens the FiftyOne App (``--print``:
                                                       only print how, as ``curate app`` did)
=====================  ==============================  ==========================================
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import typer

#: old command line → new command line (without the leading ``inkloop``)
RENAMED: dict[str, str] = {
    "promote": "models promote",
    "sync-runs": "sync-mlflow-runs",
    "curate app": "curate open-app",
}


def deprecation_message(old: str) -> str:
    """What ``inkloop OLD`` prints before it runs."""
    return f"warning: `inkloop {old}` is deprecated and will be removed; use `inkloop {RENAMED[old]}`"


def under_old_name(command: Callable[..., Any], old: str) -> Callable[..., Any]:
    """``command`` (a typer command function) to register under its old name ``old`` (a key of
    :data:`RENAMED`): same parameters, same behaviour, after a warning on stderr."""
    message = deprecation_message(old)

    @functools.wraps(command)
    def old_name(*args: Any, **kwargs: Any) -> Any:
        typer.echo(message, err=True)
        warnings.warn(message.removeprefix("warning: "), DeprecationWarning, stacklevel=2)
        return command(*args, **kwargs)

    old_name.__doc__ = f"Deprecated: use `inkloop {RENAMED[old]}`."
    return old_name
