"""What the scripts that derive a YOLO dataset from another share (``stretched.py``,
``synthetic.py``): their command line (``--data SRC --out DIR``) and how they finish a dataset
(its ``data.yaml``, and beside it a JSON record of what was made, which they also print).

Why a module: the two scripts were written as twins, each with its own copy of these steps; a
third builder would have copied them again. Not a research script itself, and not installed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def parser(doc: str, data_help: str) -> argparse.ArgumentParser:
    """The builder's argument parser: described by ``doc``'s first line, with ``--data`` (the
    source dataset, ``data_help``) and ``--out`` (the new dataset's folder); add the builder's own."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--out", required=True)
    return p


def finish(out: Path, cfg: dict[str, Any], record: str, info: dict[str, Any]) -> dict[str, Any]:
    """Write ``out/data.yaml`` (``cfg``) and ``out/<record>`` (``info`` as JSON); returns ``info``."""
    import yaml

    (out / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (out / record).write_text(json.dumps(info, indent=2))
    return info
