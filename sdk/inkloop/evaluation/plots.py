"""The precision–recall plot of an evaluation (matplotlib, imported on use)."""

from __future__ import annotations

import os
from pathlib import Path

from inkloop.evaluation.report import EvalReport


def plot_pr_curve(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """Precision–recall curve at IoU 0.5 (the envelope AP integrates), with the operating point
    and the best-F1 point marked, so a reviewer sees where the card's threshold sits."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rec = report.pr_curve.get("recall", [])
    prec = report.pr_curve.get("precision", [])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    try:
        ax.plot(rec, prec, lw=2, color="tab:blue", label=f"PR @IoU0.5 (mAP50 {report.map50:.3f})")

        def mark(recall: float, precision: float, color: str, marker: str, label: str) -> None:
            """One threshold's point on the curve, drawn above it."""
            ax.scatter([recall], [precision], color=color, marker=marker, zorder=3, label=label)

        mark(
            report.recall,
            report.precision,
            "tab:red",
            "o",
            f"operating conf>{report.operating_threshold:.3g} (F1 {report.f1:.3f})",
        )
        b = report.best_f1
        mark(b.recall, b.precision, "tab:green", "s", f"best F1 conf>{b.threshold:.3g} (F1 {b.f1:.3f})")
        if report.at_target_recall is not None:
            a = report.at_target_recall
            label = f"recall≥{report.target_recall:g}: conf>{a.threshold:.3g}"
            mark(a.recall, a.precision, "tab:orange", "^", label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_title(
            f"{report.model_version} on {Path(report.data).name or report.data} [{report.split}]", fontsize=9
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
