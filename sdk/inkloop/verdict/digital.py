"""Digital signatures in signature fields, checked for integrity with pyHanko (trust not checked).

Why integrity and not trust: the question here is "was this document changed after it was
signed?", which the file alone answers. Whether the signer's certificate chains to a trusted
root needs trust lists and revocation data this stage does not have; every record says
``trust: "not_checked"`` so nobody reads ``intact`` as "legally valid".
"""

from __future__ import annotations

import os
from typing import Any

from inkloop.verdict.record import DigitalSignature

#: pyHanko modification levels that its default diff policy allows after a signature.
_ALLOWED_LEVELS = {"NONE", "LTA_UPDATES", "FORM_FILLING", "ANNOTATIONS"}


def _text(obj: Any, key: str) -> str | None:
    try:
        v = obj.get(key)
    except Exception:
        return None
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _check_one(reader: Any, fq_name: str, sig_field: Any) -> DigitalSignature:
    from pyhanko.sign.validation.generic_cms import validate_sig_integrity
    from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

    try:
        emb = EmbeddedPdfSignature(reader, sig_field, fq_name)
    except Exception as exc:
        return DigitalSignature(
            field_name=fq_name,
            integrity="unreadable",
            detail=f"malformed signature dictionary: {_short(exc)}",
        )
    sig = emb.sig_object
    out = DigitalSignature(
        field_name=fq_name,
        integrity="unreadable",
        signer=_text(sig, "/Name"),
        reason=_text(sig, "/Reason"),
        location=_text(sig, "/Location"),
    )
    try:
        ts = emb.self_reported_timestamp
        out.signed_at = ts.isoformat() if ts else None
    except Exception:
        out.signed_at = _text(sig, "/M")
    try:
        cert = emb.signer_cert
        if out.signer is None:
            out.signer = cert.subject.native.get("common_name") or cert.subject.human_friendly
    except Exception as exc:
        out.detail = f"no signer certificate: {_short(exc)}"
        return out
    try:
        emb.compute_integrity_info()
        summary = emb.summarise_integrity_info()
        intact, valid = validate_sig_integrity(emb.signer_info, cert, "data", emb.compute_digest())
    except Exception as exc:
        out.detail = f"pyHanko could not check it: {_short(exc)}"
        return out
    coverage = summary.get("coverage")
    diff = summary.get("diff_result")
    level = getattr(diff, "modification_level", None)
    out.intact, out.valid = bool(intact), bool(valid)
    out.coverage = coverage.name.lower() if coverage is not None else None
    out.modification_level = level.name.lower() if level is not None else ("other" if diff else None)
    out.docmdp_ok = summary.get("docmdp_ok")
    if not (intact and valid):
        out.integrity = "broken"
        out.detail = "the signed bytes do not match the signature (changed inside the signed range)"
    elif coverage is not None and coverage.name == "ENTIRE_FILE":
        out.integrity = "intact"
        out.detail = "the signature covers the whole file"
    elif (
        coverage is not None
        and coverage.name == "ENTIRE_REVISION"
        and out.docmdp_ok
        and level is not None
        and level.name in _ALLOWED_LEVELS
    ):
        out.integrity = "intact_with_updates"
        out.detail = f"later incremental updates allowed by pyHanko's diff policy ({level.name.lower()})"
    else:
        out.integrity = "modified"
        why = getattr(diff, "args", None) or (level.name.lower() if level is not None else "")
        out.detail = f"changed after signing (coverage {out.coverage}; {why})"
    return out


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{exc.__class__.__name__}: {msg}"[:200] if msg else exc.__class__.__name__


def check_digital_signatures(path: str | os.PathLike[str]) -> tuple[dict[str, DigitalSignature], list[str]]:
    """Every filled signature field of a PDF, by fully qualified field name, with its integrity.

    Returns ``(signatures, reasons)``; ``reasons`` explains what could not be read (an encrypted
    file that needs a password, a broken form) — never raises for a bad file.
    """
    try:
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.sign.fields import enumerate_sig_fields
    except ImportError:  # pragma: no cover - the extra is missing
        return {}, ["digital signatures not checked: pyHanko is not installed (pip install inkloop[verdict])"]
    out: dict[str, DigitalSignature] = {}
    reasons: list[str] = []
    try:
        with open(path, "rb") as f:
            reader = PdfFileReader(f, strict=False)
            if reader.encrypted:
                try:
                    result = reader.decrypt("")
                    status = getattr(result, "status", None)
                    if status is not None and getattr(status, "name", "") == "FAILED":
                        return {}, ["digital signatures not checked: the PDF needs a password"]
                except Exception as exc:
                    return {}, [f"digital signatures not checked: cannot decrypt ({_short(exc)})"]
            try:
                fields = list(enumerate_sig_fields(reader, filled_status=True))
            except Exception as exc:
                return {}, [f"signature fields unreadable: {_short(exc)}"]
            for fq_name, _value, field_ref in fields:
                out[str(fq_name)] = _check_one(reader, str(fq_name), field_ref)
    except Exception as exc:
        reasons.append(f"digital signatures not checked: pyHanko cannot read the file ({_short(exc)})")
    return out, reasons
