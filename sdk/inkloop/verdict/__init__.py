"""The signing verdict: is this document signed, partly signed, unsigned, e-signed, or for a person?

Three kinds of evidence per page are joined in PDF points: ink (the detector's boxes from
``results.jsonl``), PDF structure (signature fields, digital signatures checked for integrity
with pyHanko, e-signature vendor marks) and words (labelled signing lines in several languages).
The record keeps every piece so a reviewer sees why. Rules and schema: ``docs/verdict.md``.

Needs the ``verdict`` extra (pyHanko) for digital signatures; without it fields are still found
and the record says the signatures were not checked.
"""

from inkloop.verdict.derive import derive_verdicts
from inkloop.verdict.digital import check_digital_signatures
from inkloop.verdict.judge import VerdictConfig, decide, ink_from_results, join, verdict_for_document
from inkloop.verdict.places import DocumentEvidence, analyze_document
from inkloop.verdict.record import (
    VERDICT_SCHEMA_VERSION,
    VERDICTS,
    VERDICTS_ORDER,
    DigitalSignature,
    DocumentVerdict,
    Ink,
    PageEvidence,
    SignaturePlace,
    VendorMark,
    Verdict,
    count_verdicts,
    iter_verdicts,
    read_verdicts,
    write_verdicts,
)

__all__ = [
    "VERDICTS",
    "VERDICTS_ORDER",
    "VERDICT_SCHEMA_VERSION",
    "DigitalSignature",
    "DocumentEvidence",
    "DocumentVerdict",
    "Ink",
    "PageEvidence",
    "SignaturePlace",
    "VendorMark",
    "Verdict",
    "VerdictConfig",
    "analyze_document",
    "check_digital_signatures",
    "count_verdicts",
    "decide",
    "derive_verdicts",
    "ink_from_results",
    "iter_verdicts",
    "join",
    "read_verdicts",
    "verdict_for_document",
    "write_verdicts",
]
