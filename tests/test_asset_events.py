"""Asset events folded into one run: the consumer reads every triggering event's folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
    from types import SimpleNamespace as E
    from inkloop_provider.assets import RESULTS, triggering_results_dirs
    events = {RESULTS: [E(extra={"results_dir": "/r/a"}), E(extra={"results_dir": "/r/b"}),
                        E(extra={"results_dir": "/r/a"}), E(extra={})]}
    assert triggering_results_dirs({"triggering_asset_events": events}, "/d") == ["/r/a", "/r/b"]
    assert triggering_results_dirs({}, "/d") == ["/d"]
    print("ok")
"""


def test_every_triggering_event_is_read() -> None:
    """Airflow is imported in a child (the test process never imports it)."""
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK)],
        env={"PYTHONPATH": str(ROOT / "plugins"), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.stdout.strip() == "ok", p.stderr[-3000:]
