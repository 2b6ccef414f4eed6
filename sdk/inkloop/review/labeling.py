"""The Label Studio workspace reviewers see: the labeling config for a model's classes and the
reviewer instructions (``labeling/INSTRUCTIONS.md``) as HTML."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

# Label colours for the labeling config, cycled; distinct on a grey scan.
_PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


_BUILTIN_INSTRUCTIONS = """\
# Reviewing detections

- Correct the model's boxes rather than drawing new ones.
- Draw tight boxes around the ink of each signature, initials included.
- Delete boxes that are not signatures.
- No signature on the page: submit with no boxes (a valuable negative).
- Skip a page only when it is unreadable.
"""


def repo_root() -> Path:
    """The checkout the defaults are relative to: ``INKLOOP_REPO``, this file's checkout, or cwd."""
    env = os.environ.get("INKLOOP_REPO")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[3]
    if (here / "pyproject.toml").is_file() and (here / "sdk" / "inkloop").is_dir():
        return here
    return Path.cwd().resolve()


def labeling_config(class_names: Sequence[str], *, header: str | None = None) -> str:
    """The Label Studio labeling config (XML) for boxes of ``class_names`` on a page image.

    The class list comes from the model card, so one function serves any detector. Names are
    XML-escaped; tag names ``image``/``label`` are what pushes and pulls use as
    ``to_name``/``from_name``. Rotation is off because the data model's boxes are axis-aligned.
    """
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("labeling_config needs at least one class name")
    if any(not n.strip() for n in names):
        raise ValueError("class names must not be blank")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class names: {names}")
    if header is None:
        header = (
            f"Correct the model's boxes: one tight box per {' or '.join(names)}; delete false boxes. "
            "Nothing to box on the page: submit with no boxes. Unreadable page: skip."
        )
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_PALETTE[i % len(_PALETTE)])}/>"
        for i, name in enumerate(names)
    )
    return (
        "<View>\n"
        f"  <Header value={quoteattr(header)}/>\n"
        '  <Image name="image" value="$image" zoom="true" zoomControl="true" rotateControl="false"/>\n'
        '  <RectangleLabels name="label" toName="image" canRotate="false" strokeWidth="2">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


_INLINE_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<em>\1</em>"),
    (re.compile(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r'<a href="\2">\1</a>'),
]


def _inline(text: str) -> str:
    out = html.escape(text, quote=True)
    for pattern, repl in _INLINE_RULES:
        out = pattern.sub(repl, out)
    return out


def markdown_to_html(markdown: str) -> str:
    """A minimal Markdown → HTML converter: headings, paragraphs, ``-``/``*``/``1.`` lists
    (continuation lines indented), bold, italics, inline code, links.

    Why not a library: the instructions are ours and simple, and the SDK's base install stays
    free of extra dependencies. Text is HTML-escaped before markup is applied.
    """
    blocks: list[str] = []
    para: list[str] = []
    list_tag: str | None = None
    items: list[str] = []

    def flush_para() -> None:
        if para:
            blocks.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    def flush_list() -> None:
        nonlocal list_tag
        if list_tag:
            body = "".join(f"<li>{_inline(item)}</li>" for item in items)
            blocks.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
            list_tag = None

    for raw in markdown.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        bullet = re.match(r"^[-*+]\s+(.*)$", stripped)
        ordered = re.match(r"^\d+[.)]\s+(.*)$", stripped)
        if not stripped:
            flush_para()
            continue
        if heading and not raw.startswith((" ", "\t")):
            flush_para()
            flush_list()
            level = len(heading.group(1))
            blocks.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif (bullet or ordered) and not raw.startswith(("  ", "\t")):
            flush_para()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                flush_list()
                list_tag = tag
            items.append((bullet or ordered).group(1))  # type: ignore[union-attr]
        elif list_tag and raw.startswith((" ", "\t")) and items:
            items[-1] += " " + stripped
        else:
            flush_list()
            para.append(stripped)
    flush_para()
    flush_list()
    return "\n".join(blocks) + "\n"


def instructions_path() -> Path:
    return repo_root() / "labeling" / "INSTRUCTIONS.md"


def instructions_html(path: Path | None = None) -> str:
    """The reviewer instructions as HTML, for a project's ``expert_instruction``.

    Reads ``labeling/INSTRUCTIONS.md`` (the one source reviewers and the repo share); when the
    SDK is installed without the checkout, a built-in short version keeps projects usable.
    """
    source = path or instructions_path()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError:
        text = _BUILTIN_INSTRUCTIONS
    return markdown_to_html(text)
