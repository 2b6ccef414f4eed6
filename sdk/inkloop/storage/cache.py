"""Where inkloop keeps local caches (model files from a registry, FiftyOne's local media).

Why one function: each cache resolved the same rule on its own (its environment variable, else the
XDG cache home, else ``~/.cache``); a third cache would have copied it again, and the rule is what
users configure, so it is written once.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(env: str, name: str) -> Path:
    """``$env`` when set (``~`` expanded), else ``$XDG_CACHE_HOME/inkloop/<name>``
    (``~/.cache/inkloop/<name>`` without ``XDG_CACHE_HOME``)."""
    override = os.environ.get(env, "").strip()
    if override:
        return Path(override).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "inkloop" / name
