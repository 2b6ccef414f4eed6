"""What the two long loop benchmarks share (the loop simulation and the replay): a work folder
that holds the run, its report rewritten as the run goes, and progress events.

Why one base: both runs take hours, so both keep everything in ``workdir`` and resume from the
report found there; a report written with other settings must stop the run, never be mixed into it.
That rule, the folder's set-up and the report's atomic rewrite were written twice, alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inkloop import storage

#: Progress events: (stage, info); what ``info`` holds is each run's (strategy, round, seed …).
ProgressFn = Callable[[str, dict[str, Any]], None]
#: The run's report in its work folder: rewritten as the run goes, resumed from, read by the CLI.
REPORT = "simulation.json"


class WorkFolderRun:
    """A run kept in its own work folder (created), telling ``progress`` what it does."""

    def __init__(self, workdir: str, progress: ProgressFn | None) -> None:
        self.progress: ProgressFn = progress or (lambda _stage, _info: None)
        self.work = Path(workdir).resolve()
        self.work.mkdir(parents=True, exist_ok=True)

    @property
    def report_path(self) -> Path:
        """Where the run's report is (:data:`REPORT` in the work folder)."""
        return self.work / REPORT

    def previous_report(
        self, config: Any, what: str, error: type[Exception] = ValueError
    ) -> dict[str, Any] | None:
        """The report a stopped run left in the work folder (None: none there), to resume from;
        ``error`` (naming the file and ``what`` wrote it) if it was written with a ``config`` other
        than this run's."""
        path = self.report_path
        if not path.is_file():
            return None
        old: dict[str, Any] = json.loads(path.read_text())
        if old.get("config") != config:
            raise error(
                f"{path} was written by {what} with other settings; use another --workdir or remove it"
            )
        return old

    def save_report(self, report: dict[str, Any]) -> None:
        """Rewrite the report atomically (a run killed mid-write leaves the previous one whole, to
        resume from)."""
        storage.write_local_atomic(
            str(self.report_path), json.dumps(report, indent=1, ensure_ascii=False).encode()
        )
