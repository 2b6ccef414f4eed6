"""Curation in FiftyOne: one persistent dataset of pages, evaluation, issues, a frozen test split,
and versioned YOLO exports.

Why it is shaped this way:

- **One persistent dataset, pages as samples.** Each sample is one page (``page_key`` is unique,
  enforced by a unique index), with the model's boxes in ``predictions`` (with confidence and
  ``model_version``) and the reviewed boxes in ``ground_truth``. ``ground_truth`` is ``None`` for a
  page nobody reviewed and an *empty* ``Detections`` for a reviewed page with no signature (a
  valuable negative); ``reviewed`` says which, so a filter never confuses the two. Re-importing is
  an upsert by ``page_key``: it updates the sample, never duplicates it, and a record that carries
  no review never erases an earlier review.
- **Boxes only through** :mod:`inkloop.convert.fiftyone` (dataset) and :mod:`inkloop.convert.yolo`
  (export), so a box means the same pixels everywhere.
- **Offline Brain.** FiftyOne Brain's default embedding model downloads weights; here pages are
  embedded by :func:`thumbnail_embedding` (a 32×32 grayscale thumbnail, mean-centred and
  unit-normalised, so cosine distance is 1 − pixel correlation). It finds the same page rendered
  twice, resized or re-encoded (the committed fixtures contain such a pair from two public
  datasets), not semantically similar pages. Brain's ``compute_similarity`` keeps the index under a
  brain key (the App can sort by similarity with it) and ``find_duplicates`` flags the redundant
  copies; ``compute_mistakenness`` scores likely label mistakes from the predictions' confidence.
  ``compute_hardness`` needs classification logits, which a detector does not produce, so hard
  pages are found by evaluation instead (pages with FP/FN).
- **A frozen test split.** A reviewed page gets ``train``/``val``/``test`` from a hash of its
  ``page_key`` (or of its near-duplicate group's anchor), so the assignment is deterministic and
  independent of what else is in the dataset. Once ``test``, a page stays ``test`` forever and is
  never exported for training; a new page that is a near-duplicate of a test page goes to test;
  a train/val page later found to duplicate a test page is set aside as ``excluded`` (it may have
  been trained on, so it can join neither side). The ``split`` field is authoritative; the sample
  tags mirror it for the App.
- **Versioned exports.** An export is written to a temporary folder, hashed with
  :func:`inkloop.datasets.dataset_manifest` (the data version), and renamed into
  ``<out>/<version>/``; an existing version folder is never overwritten (exporting unchanged data
  again returns the existing folder). ``<out>`` may be a storage URL: the version is uploaded
  there with ``manifest.json`` last (object stores have no rename).
- **Media on a local disk.** FiftyOne's open-source edition reads media from local files; page
  images stored in a bucket are read through a content-addressed local cache
  (:mod:`inkloop.curation.media`), and each sample keeps the stored image's URL (``media_url``).
"""

from __future__ import annotations

from inkloop.curation.brain import Brain
from inkloop.curation.dataset import DatasetSync
from inkloop.curation.evaluation import Evaluation
from inkloop.curation.exports import Exports


class CurationStore(DatasetSync, Evaluation, Brain, Exports):
    """The persistent FiftyOne dataset of pages, and every curation operation on it.

    One facade over four parts, each with one reason to change: the dataset and its sync
    (:mod:`~inkloop.curation.dataset`), evaluation (:mod:`~inkloop.curation.evaluation`), Brain
    and label errors (:mod:`~inkloop.curation.brain`), the test split and exports
    (:mod:`~inkloop.curation.exports`).

    ``classes`` applies when the dataset is created (stored as its ``default_classes``); an
    existing dataset keeps its own class list, which orders the YOLO class ids on export.
    """
