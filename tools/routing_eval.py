"""How well routing finds the pages a model gets wrong, against random selection of the same size.

``python tools/routing_eval.py --data DATASET [--split val] [--budget 0.2] [--model M]`` runs the
real detection pipeline with routing on the split's images, sends the top ``budget`` share of
pages (by routing's uncertainty) to "review", and counts how many of the pages with a model error
(a missed or a false box at the operating threshold, IoU 0.5) are among them. Random selection of
the same number of pages catches ``budget`` of the error pages in expectation; the ratio of the
two is what routing buys a review team.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.evaluation.routing_errors import page_has_error


def measure(
    model: str | None, data: str, split: str = "val", budget: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    from inkloop.api import DetectOptions, detect
    from inkloop.detection.results import read_results
    from inkloop.evaluation.evaluator import load_dataset
    from inkloop.routing import RoutingConfig, route_results

    ds = load_dataset(data, split)
    truth = {str(s.image.resolve()): s.boxes.tolist() for s in ds.samples}
    config = RoutingConfig(max_review_fraction=budget, review_min_uncertainty=0.0, audit_rate=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        detect(list(truth), tmp, DetectOptions(model=model), routing=config, verdict=False)
        results = read_results(tmp)
    routed = route_results(results, config)
    errors = {
        r.page_key
        for r in routed
        if page_has_error([d.xyxy for d in r.detections], truth[str(Path(r.source).resolve())])
    }
    chosen = {r.page_key for r in routed if r.decision == "review"}
    n, k = len(routed), len(chosen)
    caught = len(errors & chosen)
    rng = np.random.default_rng(seed)
    keys = [r.page_key for r in routed]
    random_caught = (
        [len(errors & set(rng.choice(keys, size=k, replace=False))) for _ in range(2000)] if k else [0]
    )
    routing_share = caught / len(errors) if errors else 0.0
    random_share = float(np.mean(random_caught)) / len(errors) if errors else 0.0
    return {
        "pages": n,
        "pages_with_errors": len(errors),
        "budget": budget,
        "reviewed_pages": k,
        "errors_caught_by_routing": caught,
        "routing_share_of_error_pages": round(routing_share, 4),
        "random_share_of_error_pages": round(random_share, 4),
        "ratio_routing_to_random": round(routing_share / random_share, 3) if random_share else None,
        "model_version": results[0].model_version if results else None,
        "config": replace(config).to_dict(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="val")
    p.add_argument("--budget", type=float, default=0.2)
    p.add_argument("--model", default=None)
    a = p.parse_args(argv)
    out = measure(a.model, a.data, a.split, a.budget)
    out.pop("config")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
