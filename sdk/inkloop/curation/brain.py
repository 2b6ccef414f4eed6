"""FiftyOne Brain, offline: thumbnail embeddings, near duplicates, likely label mistakes, issues."""

from __future__ import annotations

from typing import Any

import numpy as np

from inkloop.curation.records import (
    SIMILARITY_KEY,
    ProgressFn,
    thumbnail_embedding,
)


class Brain:
    """FiftyOne Brain, offline: thumbnail embeddings, near duplicates, likely label mistakes, issues.

    Part of :class:`~inkloop.curation.store.CurationStore`.
    """

    fo: Any
    dataset: Any
    name: str

    # -- brain ---------------------------------------------------------------------------------
    def _ensure_embeddings(self, progress: ProgressFn | None = None) -> int:
        """Compute missing thumbnail embeddings; returns how many images could not be read."""
        missing = self.dataset.exists("thumb_embedding", False)
        if not len(missing):
            return 0
        self.ensure_media(missing)  # stored images whose local copy is gone (a cleared cache)
        ids, paths = missing.values(["id", "filepath"])
        vecs: dict[str, np.ndarray] = {}
        unreadable = 0
        for sid, path in zip(ids, paths, strict=True):
            try:
                vecs[sid] = thumbnail_embedding(path)
            except OSError:
                unreadable += 1  # stays without embedding: excluded from duplicate search
            if progress:
                progress(1)
        if vecs:
            self.dataset.set_values("thumb_embedding", vecs, key_field="id")
        return unreadable

    def find_near_duplicates(
        self, threshold: float = 0.05, progress: ProgressFn | None = None
    ) -> list[list[str]]:
        """Groups of pages that are the same image (cosine distance of thumbnails < ``threshold``).

        Writes ``dup_group`` (the group's smallest ``page_key``) on every member,
        ``near_duplicate=True`` and ``dup_of`` on the redundant copies Brain's ``find_duplicates``
        picks, and ``dup_distance``. Groups are the connected components of the "closer than
        ``threshold``" graph (complete, so a chain of near-copies is one group: the split relies on
        it); Brain's similarity index is kept under the brain key ``page_similarity`` for the App.
        Returns the groups (each sorted), largest first.
        """
        import fiftyone.brain as fob
        from scipy.sparse.csgraph import connected_components
        from sklearn.neighbors import NearestNeighbors

        ds = self.dataset
        self._ensure_embeddings(progress)
        ds.set_field("near_duplicate", False).save("near_duplicate")
        for name in ("dup_group", "dup_of", "dup_distance"):
            ds.set_field(name, None).save(name)
        view = ds.exists("thumb_embedding")
        if len(view) < 2:
            return []
        ids, keys, vecs = view.values(["id", "page_key", "thumb_embedding"])
        X = np.stack(vecs).astype(np.float32)

        # Complete groups: every pair closer than the threshold is connected.
        graph = NearestNeighbors(radius=threshold, metric="cosine").fit(X).radius_neighbors_graph(X)
        _, labels = connected_components(graph, directed=False)
        members: dict[int, list[int]] = {}
        for i, lab in enumerate(labels):
            members.setdefault(int(lab), []).append(i)
        groups = [sorted(keys[i] for i in m) for m in members.values() if len(m) > 1]

        # Brain: a persistent similarity index (App) and its choice of redundant copies.
        if SIMILARITY_KEY in ds.list_brain_runs():
            ds.delete_brain_run(SIMILARITY_KEY)
        index = fob.compute_similarity(
            view,
            embeddings="thumb_embedding",
            backend="sklearn",
            metric="cosine",
            brain_key=SIMILARITY_KEY,
            progress=False,
        )
        index.find_duplicates(thresh=threshold)
        pos = {sid: i for i, sid in enumerate(ids)}
        dup_of: dict[str, str] = {}
        dup_dist: dict[str, float] = {}
        for kept, dups in index.neighbors_map.items():
            for dup_id, _ in dups:  # Brain's reported distance is not cosine here: recompute
                a, b = pos[str(dup_id)], pos[str(kept)]
                dup_of[str(dup_id)] = keys[b]
                dup_dist[str(dup_id)] = round(float(1.0 - X[a] @ X[b]), 6)
        group_of = {k: g[0] for g in groups for k in g}
        if group_of:
            anchors = {sid: group_of[k] for sid, k in zip(ids, keys, strict=True) if k in group_of}
            ds.set_values("dup_group", anchors, key_field="id")
        if dup_of:
            ds.set_values("near_duplicate", dict.fromkeys(dup_of, True), key_field="id")
            ds.set_values("dup_of", dup_of, key_field="id")
            ds.set_values("dup_distance", dup_dist, key_field="id")
        return sorted(groups, key=lambda g: (-len(g), g[0]))

    def find_label_mistakes(
        self,
        pred_field: str = "predictions",
        gt_field: str = "ground_truth",
        loc_threshold: float = 0.7,
        missing_conf: float = 0.8,
        iou: float = 0.5,
    ) -> list[str]:
        """Reviewed pages whose ground truth is likely wrong, most likely first.

        Brain's ``compute_mistakenness`` (from prediction confidence, no downloads) gives per-box
        ``mistakenness_loc`` (a confident prediction overlapping the box only loosely), and
        ``possible_spurious`` (a ground-truth box no prediction matches). Brain only calls a
        prediction "missing" above 0.95 confidence; a detector's confident boxes are often lower,
        so an unmatched prediction at ``missing_conf`` or more (from :meth:`evaluate`, eval key
        ``eval``) is flagged too. Writes ``label_issue``, ``label_issue_score`` and
        ``label_issue_reasons`` (``loose_box``, ``missing_box``, ``spurious_box``).
        """
        import fiftyone.brain as fob

        view = self.reviewed()
        if not len(view):
            return []
        fob.compute_mistakenness(view, pred_field, gt_field, progress=False)
        self.evaluate(pred_field, gt_field, eval_key="eval", iou=iou)
        ids, keys, loc, spurious, pred_eval, pred_conf = view.values(
            [
                "id",
                "page_key",
                f"{gt_field}.detections.mistakenness_loc",
                "possible_spurious",
                f"{pred_field}.detections.eval",
                f"{pred_field}.detections.confidence",
            ]
        )
        flagged: list[tuple[float, str]] = []
        is_issue: dict[str, bool] = {}
        scores: dict[str, float | None] = {}
        reasons: dict[str, list[str]] = {}
        for sid, key, lo, sp, ev, cf in zip(ids, keys, loc, spurious, pred_eval, pred_conf, strict=True):
            why: list[str] = []
            score = 0.0
            lo_max = max((x for x in (lo or []) if x is not None), default=0.0)
            if lo_max >= loc_threshold:
                why.append("loose_box")
                score = max(score, lo_max)
            conf_fp = [
                c for e, c in zip(ev or [], cf or [], strict=True) if e == "fp" and (c or 0) >= missing_conf
            ]
            if conf_fp:
                why.append("missing_box")
                score = max(score, max(conf_fp))
            if sp:
                why.append("spurious_box")
                score = max(score, 0.5)
            is_issue[sid] = bool(why)
            scores[sid] = round(score, 4) if why else None
            reasons[sid] = why
            if why:
                flagged.append((score, key))
        self.dataset.set_values("label_issue", is_issue, key_field="id")
        self.dataset.set_values("label_issue_score", scores, key_field="id")
        self.dataset.set_values("label_issue_reasons", reasons, key_field="id")
        return [k for _, k in sorted(flagged, key=lambda t: (-t[0], t[1]))]

    def find_issues(
        self,
        dup_threshold: float = 0.05,
        loc_threshold: float = 0.7,
        missing_conf: float = 0.8,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Near-duplicates, likely label mistakes and uniqueness, in one JSON-able summary."""
        import fiftyone.brain as fob

        groups = self.find_near_duplicates(dup_threshold, progress)
        mistakes = self.find_label_mistakes(loc_threshold=loc_threshold, missing_conf=missing_conf)
        with_emb = self.dataset.exists("thumb_embedding")
        if len(with_emb) >= 2:  # how unlike the rest each page is: review the odd ones first
            if "uniqueness" in self.dataset.list_brain_runs():
                self.dataset.delete_brain_run("uniqueness")
            fob.compute_uniqueness(with_emb, embeddings="thumb_embedding", progress=False)
        F = self.fo.ViewField
        details = []
        if mistakes:
            v = self.dataset.match(F("page_key").is_in(mistakes))
            info = dict(
                zip(
                    v.values("page_key"),
                    zip(v.values("label_issue_score"), v.values("label_issue_reasons"), strict=True),
                    strict=True,
                )
            )
            details = [{"page_key": k, "score": info[k][0], "reasons": info[k][1]} for k in mistakes]
        dup_keys = sorted(self.dataset.match(F("near_duplicate") == True).values("page_key"))  # noqa: E712
        return {
            "dataset": self.name,
            "near_duplicate_groups": groups,
            "near_duplicates": dup_keys,
            "label_mistakes": details,
            "dup_threshold": dup_threshold,
            "loc_threshold": loc_threshold,
            "missing_conf": missing_conf,
        }
