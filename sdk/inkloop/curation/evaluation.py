"""Evaluating stored predictions against ground truth (FiftyOne's detection evaluation)."""

from __future__ import annotations

from typing import Any


class Evaluation:
    """Evaluating stored predictions against ground truth (FiftyOne's detection evaluation).

    Part of :class:`~inkloop.curation.store.CurationStore`.
    """

    fo: Any
    dataset: Any
    name: str

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self,
        pred_field: str = "predictions",
        gt_field: str = "ground_truth",
        eval_key: str = "eval",
        iou: float = 0.5,
        compute_mAP: bool = False,
        split: str | None = None,
    ) -> dict[str, Any]:
        """``evaluate_detections`` on the reviewed pages (or one split of them).

        Writes per-sample ``<eval_key>_tp/_fp/_fn`` and per-box ``<eval_key>`` (tp/fp/fn) fields;
        returns counts, precision, recall, F1 (and COCO-style mAP when ``compute_mAP``, which
        works offline). Negatives count: every box on a reviewed empty page is a false positive.
        """
        view = self.reviewed(split)
        n = len(view)
        summary: dict[str, Any] = {
            "dataset": self.name,
            "split": split,
            "eval_key": eval_key,
            "iou": iou,
            "pages": n,
        }
        if n == 0:
            summary.update(tp=0, fp=0, fn=0, **_rates(0, 0, 0), pages_with_errors=0)
            return summary
        results = view.evaluate_detections(
            pred_field, gt_field=gt_field, eval_key=eval_key, iou=iou, compute_mAP=compute_mAP, progress=False
        )
        tp, fp, fn = (int(view.sum(f"{eval_key}_{k}") or 0) for k in ("tp", "fp", "fn"))
        F = self.fo.ViewField
        errors = view.match((F(f"{eval_key}_fp") > 0) | (F(f"{eval_key}_fn") > 0))
        summary.update(
            tp=tp,
            fp=fp,
            fn=fn,
            **_rates(tp, fp, fn),
            pages_with_errors=len(errors),
            negatives=len(view.match(F(f"{gt_field}.detections").length() == 0)),
            model_versions=sorted(v for v in view.distinct("model_version") if v),
        )
        if compute_mAP:
            summary["mAP"] = float(results.mAP())
        return summary


def _rates(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    """Precision, recall and F1 from the counts; None where a rate is undefined (no predictions, no
    ground truth, or a zero rate for F1), so a summary never shows a 0 that was not measured."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else None
    return {"precision": precision, "recall": recall, "f1": f1}
