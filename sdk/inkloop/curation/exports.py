"""The frozen test split and versioned YOLO exports."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from inkloop import storage
from inkloop.convert.fiftyone import from_fiftyone
from inkloop.convert.yolo import format_line, to_yolo
from inkloop.curation.records import (
    DEFAULT_SPLIT,
    EXCLUDED,
    SPLITS,
    CurationError,
    ProgressFn,
    _now,
    _safe_stem,
    split_for_key,
)
from inkloop.datasets import dataset_manifest
from inkloop.evaluation.domains import UNKNOWN_DOMAIN, write_domains
from inkloop.geometry import clip
from inkloop.storage import folders as storage_folders


def _domain_counts(domains: dict[str, str]) -> dict[str, dict[str, int]]:
    """``{split: {domain: pages}}`` from ``{"images/<split>/<name>": domain}``."""
    out: dict[str, dict[str, int]] = {}
    for rel, dom in sorted(domains.items()):
        split = rel.split("/")[1]
        out.setdefault(split, {})
        out[split][dom] = out[split].get(dom, 0) + 1
    return out


class Exports:
    """The frozen test split and versioned YOLO exports.

    Part of :class:`~inkloop.curation.store.CurationStore`.
    """

    fo: Any
    dataset: Any
    name: str
    storage_options: dict[str, Any]

    # -- the frozen split ------------------------------------------------------------------------
    def split_config(self) -> dict[str, Any] | None:
        """The settings the split was frozen with (``None`` before the first freeze)."""
        cfg = self.dataset.info.get("inkloop_split")
        return dict(cfg) if cfg else None

    def freeze_test_split(
        self,
        fraction: float | None = None,
        val_fraction: float | None = None,
        seed: int | None = None,
        dedupe: bool = True,
        dup_threshold: float = 0.05,
    ) -> dict[str, Any]:
        """Give every reviewed page without a split one; never move a page out of ``test``.

        The first call freezes ``fraction`` (test), ``val_fraction`` and ``seed`` in the dataset;
        later calls use them (passing different values raises :class:`CurationError`, since
        changing them would make the split depend on when a page arrived). With ``dedupe`` the
        near-duplicate groups are recomputed first, so a group always shares one split.
        Returns counts per split and what this call changed.
        """
        ds = self.dataset
        asked = {"test_fraction": fraction, "val_fraction": val_fraction, "seed": seed}
        cfg = self.split_config()
        if cfg is None:
            cfg = {k: (v if v is not None else DEFAULT_SPLIT[k]) for k, v in asked.items()}
            t, v = cfg["test_fraction"], cfg["val_fraction"]
            if min(t, v) < 0 or t + v >= 1:
                raise CurationError(f"bad split fractions: {cfg}")
            cfg["frozen_at"] = _now()
            ds.info["inkloop_split"] = cfg
            ds.save()
        else:
            clash = {k: v for k, v in asked.items() if v is not None and v != cfg[k]}
            if clash:
                raise CurationError(
                    f"the split was frozen with {cfg}; refusing {clash}: a frozen test set cannot change"
                )
        if dedupe:
            self.find_near_duplicates(dup_threshold)

        ids, keys, splits, groups, reviewed = ds.values(["id", "page_key", "split", "dup_group", "reviewed"])
        by_group: dict[str, list[int]] = {}
        for i, (k, g) in enumerate(zip(keys, groups, strict=True)):
            by_group.setdefault(g or k, []).append(i)
        changes: dict[str, str] = {}
        assigned = moved = excluded = 0
        for gkey, idx in by_group.items():
            have = {splits[i] for i in idx if splits[i] in SPLITS}
            if "test" in have:
                target = "test"
            elif have:
                target = "train" if "train" in have else "val"
            else:
                target = split_for_key(gkey, cfg["test_fraction"], cfg["val_fraction"], cfg["seed"])
            for i in idx:
                cur = splits[i]
                if not reviewed[i] or cur in ("test", EXCLUDED, target):
                    continue
                if cur is None:
                    changes[ids[i]] = target
                    assigned += 1
                elif target == "test":  # trained on, yet duplicates a test page: set aside
                    changes[ids[i]] = EXCLUDED
                    excluded += 1
                else:  # val -> train inside a group (train/val are not frozen)
                    changes[ids[i]] = target
                    moved += 1
        if changes:
            ds.set_values("split", changes, key_field="id")
        self._sync_split_tags()
        counts = {s: len(ds.match(self.fo.ViewField("split") == s)) for s in (*SPLITS, EXCLUDED)}
        return {
            "dataset": self.name,
            **counts,
            "newly_assigned": assigned,
            "moved": moved,
            "newly_excluded": excluded,
            "config": cfg,
            "domains": self.domains_per_split(),
        }

    def domains_per_split(self) -> dict[str, dict[str, int]]:
        """Reviewed pages per split and domain (``unknown``: imported before domains were
        recorded, or from a source that could not be opened), so a test split without one of the
        domains shows before a gate trusts it."""
        F = self.fo.ViewField
        out: dict[str, dict[str, int]] = {}
        for split in SPLITS:
            counts = self.reviewed().match(F("split") == split).count_values("domain")
            ordered = sorted(counts.items(), key=lambda kv: str(kv[0]))
            out[split] = {(k or UNKNOWN_DOMAIN): n for k, n in ordered}
        return out

    def _sync_split_tags(self) -> None:
        """Tags mirror the ``split`` field (manual tag edits in the App are reverted)."""
        F = self.fo.ViewField
        managed = [*SPLITS, EXCLUDED]
        self.dataset.untag_samples(managed)
        for s in managed:
            self.dataset.match(F("split") == s).tag_samples(s)

    # -- export ----------------------------------------------------------------------------------
    def export_yolo(
        self,
        out_dir: str | os.PathLike[str],
        version: str | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Any]:
        """Write the reviewed pages as a YOLO dataset in ``<out_dir>/<version>/`` and return a summary.

        ``out_dir`` is a local folder or a storage URL (``s3://…``; the store's ``storage_options``).

        Layout: ``images/{train,val,test}``, ``labels/{train,val,test}`` (a negative page gets an
        empty label file), ``data.yaml`` (class names from the dataset's class list, no ``path`` so
        it resolves beside the yaml), ``domains.json`` (each page's ``scan``/``digital`` domain, when
        the pages have one; :mod:`inkloop.evaluation.domains`) and ``manifest.json`` (sha256 of every
        image and label file and of ``domains.json``;
        ``data_version`` is the manifest's hash). ``version`` defaults to
        ``sha256-<first 16 hex of data_version>``. The split is brought up to date first (new pages
        get theirs); ``test`` pages only ever go to ``images/test``. An existing version folder is
        never overwritten: the same data again returns it (``reused``), other data raises.

        The version is built in a local folder and then published: locally by one rename (beside
        the versions), on an object store by uploading every file with ``manifest.json`` last,
        so a version whose ``manifest.json`` is there is complete; an upload that was cut short
        leaves no manifest, and the next export of that version replaces what it left.
        Page images stored in a bucket are read from the local media cache, fetched again first
        when their copy is gone (:meth:`ensure_media`).
        """
        import yaml

        import inkloop

        split_summary = self.freeze_test_split()
        F = self.fo.ViewField
        view = self.reviewed().match(F("split").is_in(list(SPLITS)))
        self.ensure_media(view)
        keys, paths, splits, ws, hs, labels, boxes, versions, page_domains = view.values(
            [
                "page_key",
                "filepath",
                "split",
                "page_width",
                "page_height",
                "ground_truth.detections.label",
                "ground_truth.detections.bounding_box",
                "model_version",
                "domain",
            ]
        )
        classes = self.classes
        class_ids = {c: i for i, c in enumerate(classes)}
        unknown = sorted({lab for labs in labels for lab in (labs or []) if lab not in class_ids})
        if unknown:
            raise CurationError(f"ground truth has labels outside the class list {classes}: {unknown}")
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise CurationError(f"{len(missing)} page images are missing, e.g. {missing[:3]}")
        if version is not None and (not version or "/" in version or version.startswith(".")):
            raise CurationError(f"bad version name {version!r}")

        out_url = os.fspath(out_dir)
        remote = storage.is_url(out_url)
        opts = self.storage_options
        if remote:  # built on this machine, then uploaded; the bucket must answer before the work
            storage.require_folder(out_url, opts)
            tmp = Path(tempfile.mkdtemp(prefix="inkloop-export-"))
        else:
            out = Path(out_url)
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / f".tmp-{uuid.uuid4().hex[:12]}"
        try:
            for s in SPLITS:
                (tmp / "images" / s).mkdir(parents=True)
                (tmp / "labels" / s).mkdir(parents=True)
            stems: set[str] = set()
            pages: dict[str, list[str]] = {s: [] for s in SPLITS}
            n_boxes = negatives = dropped = 0
            domains: dict[str, str] = {}  # image path relative to the export → domain
            for key, src, split, w, h, labs, bxs, dom in zip(
                keys, paths, splits, ws, hs, labels, boxes, page_domains, strict=True
            ):
                stem = _safe_stem(key)
                if stem in stems:  # two keys that sanitise alike: disambiguate by the key's hash
                    stem = f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
                stems.add(stem)
                image_name = f"{stem}{Path(src).suffix.lower()}"
                shutil.copyfile(src, tmp / "images" / split / image_name)
                if dom:
                    domains[f"images/{split}/{image_name}"] = dom
                lines = []
                for lab, box in zip(labs or [], bxs or [], strict=True):
                    x0, y0, x1, y1 = clip(from_fiftyone(box, w, h), w, h)
                    if x1 - x0 <= 0 or y1 - y0 <= 0:
                        dropped += 1  # entirely outside the page
                        continue
                    lines.append(format_line(class_ids[lab], to_yolo((x0, y0, x1, y1), w, h)))
                (tmp / "labels" / split / f"{stem}.txt").write_text("".join(ln + "\n" for ln in lines))
                n_boxes += len(lines)
                negatives += not lines
                pages[split].append(key)
                if progress:
                    progress(1)
            if domains:  # the evaluator and the gate score each domain; part of the data version
                write_domains(tmp, domains)
            manifest = dataset_manifest(tmp)
            digest = str(manifest["data_version"]).split(":", 1)[-1]
            name = version or f"sha256-{digest[:16]}"
            final = storage.join(out_url, name) if remote else str((out / name).resolve())
            counts = {s: len(v) for s, v in pages.items()}
            per_domain = _domain_counts(domains)
            summary: dict[str, Any] = {
                "dataset": self.name,
                "version": name,
                "data_version": manifest["data_version"],
                "path": final,
                "data_yaml": storage.join(final, "data.yaml"),
                "splits": counts,
                "boxes": n_boxes,
                "negatives": negatives,
                "dropped_boxes": dropped,
                "files": len(manifest["files"]),
                "domains": per_domain,
                "reused": False,
                "warnings": [],
            }
            missing = sorted({d for c in per_domain.values() for d in c} - set(per_domain.get("test", {})))
            if missing:
                summary["warnings"].append(
                    f"the test split holds no {', '.join(missing)} page: the gate cannot check that domain"
                )
            if not counts["train"] or not counts["val"]:
                summary["warnings"].append("train or val is empty: ultralytics cannot train on this export")
            if split_summary.get(EXCLUDED):
                summary["warnings"].append(
                    f"{split_summary[EXCLUDED]} page(s) excluded: near-duplicates of test pages"
                )
            if self._version_exists(final, manifest["data_version"]):
                shutil.rmtree(tmp)
                summary["reused"] = True
                return summary
            (tmp / "data.yaml").write_text(
                yaml.safe_dump(
                    {
                        "train": "images/train",
                        "val": "images/val",
                        "test": "images/test",
                        "names": dict(enumerate(classes)),
                    },
                    sort_keys=False,
                )
            )
            doc = {
                "version": name,
                "data_version": manifest["data_version"],
                "dataset": self.name,
                "created_at": _now(),
                "inkloop_version": inkloop.__version__,
                "classes": classes,
                "splits": counts,
                "domains": per_domain,
                "boxes": n_boxes,
                "negatives": negatives,
                "dropped_boxes": dropped,
                "split_config": self.split_config(),
                "model_versions": sorted({v for v in versions if v}),
                "pages": pages,
                "files": manifest["files"],
            }
            (tmp / "manifest.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
            if remote:
                storage_folders.upload_folder(tmp, final, opts, last=("manifest.json",))
                shutil.rmtree(tmp)
            else:
                try:
                    os.rename(tmp, final)
                except OSError as exc:  # another export of the same name won the race
                    raise CurationError(
                        f"{final} appeared while exporting; versions are never overwritten"
                    ) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        exports = list(self.dataset.info.get("inkloop_exports", []))
        exports.append(
            {k: summary[k] for k in ("version", "data_version", "path", "splits")} | {"at": _now()}
        )
        self.dataset.info["inkloop_exports"] = exports[-100:]
        self.dataset.save()
        return summary

    def _version_exists(self, final: str, data_version: str) -> bool:
        """True if the version ``final`` holds ``data_version`` already; False if it is free.

        Other data there raises :class:`CurationError` (versions are never overwritten). On an
        object store a folder without ``manifest.json`` is an upload that was cut short: its
        files are removed and the version is free again.
        """
        opts = self.storage_options
        text = storage.read_text_if_exists(storage.join(final, "manifest.json"), opts)
        if text is not None:
            prev = json.loads(text)
            if prev.get("data_version") == data_version:
                return True
            raise CurationError(f"{final} exists with other data; versions are never overwritten")
        if not storage.is_url(final):
            if os.path.exists(final):
                raise CurationError(f"{final} exists with other data; versions are never overwritten")
            return False
        for leftover in storage.find(final, opts):  # an unfinished upload (no manifest)
            storage.delete(leftover, opts)
        return False
