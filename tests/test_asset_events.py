"""Asset events folded into one run: the consumer reads every triggering event's folder, and the
folders published after the run's window (on a real deployment: tests/test_deploy.py)."""

from __future__ import annotations

import os
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

    # events published after the run's window, read through the task's inlet
    class Events:
        def __init__(self, events):
            self.events = events
        def after(self, stamp):
            return Events([e for e in self.events if e.timestamp > stamp])
        def ascending(self):
            return Events(sorted(self.events, key=lambda e: e.timestamp))
        def __iter__(self):
            return iter(self.events)

    class Inlets:
        def __init__(self, **by_name):
            self.by_name = by_name
        def __getitem__(self, asset):
            return self.by_name[asset.name]

    published = [E(timestamp=t, extra={"results_dir": d}) for t, d in ((3, "/r/c"), (1, "/r/a"), (2, "/r/b"))]
    window = {RESULTS: [published[1]]}
    ctx = {"triggering_asset_events": window, "inlet_events": Inlets(inkloop_results=Events(published))}
    assert triggering_results_dirs(ctx, "/d") == ["/r/a", "/r/b", "/r/c"]
    ctx = {"triggering_asset_events": window, "inlet_events": Inlets()}  # not an inlet of the task
    assert triggering_results_dirs(ctx, "/d") == ["/r/a"]
    print("ok")
"""


def test_every_triggering_event_is_read() -> None:
    """Airflow is imported in a child (the test process never imports it)."""
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHECK)],
        env={
            "PYTHONPATH": str(ROOT / "plugins"),
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],  # importing Airflow makes its logs folder there
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.stdout.strip() == "ok", p.stderr[-3000:]
