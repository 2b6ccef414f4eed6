"""The words that ask for a signature, per language, and the stamps e-signature vendors leave.

Why rules and not a model: a place that asks for a signature is named in a handful of fixed
phrases per language, and a reviewer must be able to read *why* a line counted as a place. Each
rule is a regular expression on one text line (case-insensitive, accents as written).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Label phrases per language (ISO 639-1). English applies on every page (it is common in
#: documents in other languages); another language's rules apply when the page is in that
#: language or its language is unknown, so German "Firma" (company) is not Spanish "Firma".
LABELS: dict[str, tuple[str, ...]] = {
    "en": (
        r"\bsignatures?\b",
        r"\bsigned\s+by\b",
        r"\bsign\s+here\b",
        r"\bauthori[sz]ed\s+(?:signatory|signature|representative)\b",
        r"\bsignatory\b",
        r"\bsigned\s*:",
        r"\bwitness\s*:",
    ),
    "pt": (r"\bassinaturas?\b", r"\bassinado\s+por\b", r"\bassine\s+aqui\b", r"\bsignat[áa]rio\b"),
    "es": (r"\bfirmas?\b", r"\bfirmado\s+por\b", r"\bfirme\s+aqu[ií]\b", r"\bfirmante\b"),
    "fr": (r"\bsignatures?\b", r"\bsign[ée]e?\s+par\b", r"\blu\s+et\s+approuv[ée]\b", r"\bsignataire\b"),
    "de": (
        r"\bunterschrift(?:en)?\b",
        r"\bunterschrieben\b",
        r"\bunterzeichnet\b",
        r"\bzeichnungsberechtigt",
    ),
    "it": (r"\bfirma\b", r"\bfirmato\s+da\b"),
    "nl": (r"\bhandtekening\b", r"\bondertekend\b"),
}

#: A line that is only a date's label ("Date:", "Dated ____", "Datum", "Data", "Fecha", "Place and
#: date", "Ort, Datum", "Lieu et date", "Local e data"): what is written beside or under it is a
#: date (with a place), not a signature. The whole line must be the label (rules and punctuation
#: aside), so "Signature and date" stays a signing label and prose that mentions a date is no
#: label. Spaces are optional: OCR often joins words ("PlaceandDate").
DATE_LINE = re.compile(
    r"^[\W_]*(?:(?:place|city|ort|lieu|local|lugar|luogo|plaats)\s*(?:,|/|and|und|et|e|y|en)?\s*)?"
    r"(?:date|dated|datum|data|fecha)[\W_]*$",
    re.IGNORECASE,
)

#: "X______" on its own: a signing line with no word, in any language.
X_LINE = re.compile(r"(?<![^\W_])x\s*_{3,}", re.IGNORECASE)

#: A label line is short: a sentence that mentions a signature ("the signature of this
#: agreement…") is not a place to sign. Characters of the line without rules and dots.
MAX_LABEL_CHARS = 60

#: Frequent short words per language, to tell a page's language from its text layer.
STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        [
            "the",
            "and",
            "of",
            "to",
            "in",
            "is",
            "for",
            "that",
            "with",
            "by",
            "this",
            "on",
            "are",
            "be",
            "as",
            "or",
            "at",
            "from",
        ]
    ),
    "pt": frozenset(
        [
            "o",
            "os",
            "a",
            "as",
            "de",
            "do",
            "da",
            "dos",
            "das",
            "e",
            "em",
            "para",
            "por",
            "com",
            "que",
            "um",
            "uma",
            "não",
            "pelo",
        ]
    ),
    "es": frozenset(
        [
            "el",
            "los",
            "la",
            "las",
            "de",
            "del",
            "y",
            "en",
            "para",
            "por",
            "con",
            "que",
            "un",
            "una",
            "no",
            "se",
            "al",
        ]
    ),
    "fr": frozenset(
        [
            "le",
            "la",
            "les",
            "des",
            "de",
            "du",
            "et",
            "en",
            "pour",
            "par",
            "avec",
            "que",
            "un",
            "une",
            "ne",
            "est",
            "au",
            "aux",
        ]
    ),
    "de": frozenset(
        [
            "der",
            "die",
            "das",
            "den",
            "dem",
            "des",
            "und",
            "in",
            "zu",
            "mit",
            "von",
            "für",
            "ist",
            "ein",
            "eine",
            "nicht",
            "auf",
            "im",
        ]
    ),
    "it": frozenset(
        [
            "il",
            "lo",
            "la",
            "gli",
            "le",
            "di",
            "del",
            "della",
            "e",
            "in",
            "per",
            "con",
            "che",
            "un",
            "una",
            "non",
            "è",
            "al",
        ]
    ),
    "nl": frozenset(
        [
            "de",
            "het",
            "een",
            "en",
            "van",
            "in",
            "op",
            "te",
            "met",
            "voor",
            "dat",
            "is",
            "niet",
            "zijn",
            "door",
        ]
    ),
}

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def page_language(text: str) -> tuple[str | None, str]:
    """The page's language among those with rules, or ``None`` and why.

    Returns ``(lang, note)``. ``note`` is ``""`` when a language was found, ``"too_little_text"``
    when the page has too few words to tell (rules of every language then apply), or
    ``"no_rules"`` when the text is clearly in a language (or script) without rules.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < 8:
        return None, "too_little_text"
    latin = sum(1 for w in words if all(ord(c) < 0x250 for c in w))
    if latin < 0.5 * len(words):
        return None, "no_rules"
    scores = {lang: sum(w in sw for w in words) for lang, sw in STOPWORDS.items()}
    best = max(scores, key=lambda k: scores[k])
    if scores[best] < max(3, 0.1 * len(words)):  # real prose is 30-50 % such words
        return None, "no_rules"
    return best, ""


def compiled_labels(lang: str | None) -> list[tuple[str, re.Pattern[str]]]:
    """The label rules that apply to a page in ``lang`` (all of them when it is unknown)."""
    langs = list(LABELS) if lang is None else ["en"] + ([lang] if lang != "en" else [])
    return [(lg, re.compile(rx, re.IGNORECASE)) for lg in langs for rx in LABELS[lg]]


@dataclass(frozen=True, slots=True)
class VendorRule:
    """An e-signature vendor's stamp: its name and the ID it prints on each page."""

    vendor: str
    pattern: re.Pattern[str]


_UUID = r"[0-9A-F]{8}-?[0-9A-F]{4}-?[0-9A-F]{4}-?[0-9A-F]{4}-?[0-9A-F]{12}"

#: A vendor's name alone ("we use DocuSign") is not a mark; its stamp carries an ID.
VENDORS: tuple[VendorRule, ...] = (
    VendorRule("docusign", re.compile(rf"docusign\s+envelope\s+id\s*:?\s*({_UUID})", re.I)),
    VendorRule("adobe_acrobat_sign", re.compile(r"\b(CBJCH[A-Za-z0-9_-]{20,})", re.I)),
    VendorRule(
        "dropbox_sign",
        re.compile(
            r"(?:hellosign|dropbox\s+sign)[^\n]{0,40}?\b(?:document|signature\s+request)\s+id\s*:?\s*"
            r"([0-9a-f]{40})",
            re.I,
        ),
    ),
    VendorRule(
        "pandadoc", re.compile(r"pandadoc[^\n]{0,40}?\bdocument\s+id\s*:?\s*([A-Za-z0-9]{16,})", re.I)
    ),
    VendorRule(
        "yousign", re.compile(rf"yousign[^\n]{{0,40}}?\b(?:id|signature\s+request)\s*:?\s*({_UUID})", re.I)
    ),
)
