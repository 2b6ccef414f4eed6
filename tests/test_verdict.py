"""The signing verdict on real files made here (pymupdf, pyHanko, a certificate made at test time)."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pymupdf
import pytest

import verdict_corpus as vc
from inkloop.types import Detection, Page, PageResult
from inkloop.verdict import (
    VERDICTS,
    DocumentVerdict,
    VerdictConfig,
    analyze_document,
    check_digital_signatures,
    count_verdicts,
    derive_verdicts,
    read_verdicts,
    verdict_for_document,
    write_verdicts,
)

DPI = 150.0


def _result(path: Path, index: int, boxes_pt: list[tuple[float, float, float, float, float]]) -> PageResult:
    """A page result as the pipeline writes it: boxes in pixels at 150 dpi (given here in points)."""
    k = DPI / 72.0
    dets = [Detection("signature", s, (x0 * k, y0 * k, x1 * k, y1 * k)) for x0, y0, x1, y1, s in boxes_pt]
    page = Page("doc", index, round(595 * k), round(842 * k), dpi=DPI, pdf_size=(595.0, 842.0))
    return PageResult(page=page, detections=dets, model_version="test@1", source=str(path))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return vc.make_certificate(tmp_path_factory.mktemp("pki"))


def _contract(path: Path, lang: str, style: str, n: int = 2) -> list[tuple[float, float, float, float]]:
    doc = pymupdf.open()
    _, rules = vc.contract_page(doc, lang, n, style)
    vc._save(doc, path)
    return rules


# -- places -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", list(vc.BODY))
@pytest.mark.parametrize("style", vc.STYLES)
def test_labelled_lines_are_found_in_five_languages_with_their_rule(
    tmp_path: Path, lang: str, style: str
) -> None:
    path = tmp_path / "c.pdf"
    rules = _contract(path, lang, style, n=3)
    ev = analyze_document(path)
    assert ev.pages[0].text_layer and ev.pages[0].language == lang
    assert [p.kind for p in ev.places] == ["label"] * 3
    for place, rule in zip(ev.places, rules, strict=True):
        assert place.rule == ("drawn" if style == "rule_above_label" else "underscores")
        assert place.zone is not None
        # the zone sits on the rule and reaches a signature's height above it
        assert place.zone[0] <= rule[0] + 15 and place.zone[2] >= rule[2] - 15
        assert place.zone[1] <= rule[3] - 40 <= place.zone[3]


def test_sentences_and_other_languages_words_are_not_places(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_textbox(
        (72, 72, 523, 300),
        "Der Vertrag wird von der Firma und dem Kunden geschlossen und ist mit der Unterschrift gültig. "
        "Die Leistungen sind in der Anlage beschrieben und werden nicht von Dritten erbracht.",
        fontsize=11,
    )
    page.insert_text((72, 400), "Firma: ACME GmbH", fontsize=10)  # German: company, not "signature"
    vc._save(doc, tmp_path / "de.pdf")
    ev = analyze_document(tmp_path / "de.pdf")
    assert ev.pages[0].language == "de"
    assert ev.places == []


def test_rotated_page_places_are_in_the_displayed_frame(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page, _ = vc.contract_page(doc, "en", 1, "same_line")
    page.set_rotation(90)
    vc._save(doc, tmp_path / "r.pdf")
    ev = analyze_document(tmp_path / "r.pdf")
    (place,) = ev.places
    assert place.box is not None
    with pymupdf.open(tmp_path / "r.pdf") as d:
        hit = d[0].search_for("Signature")[0] * d[0].rotation_matrix
    assert abs(place.box[0] - min(hit.x0, hit.x1)) < 2 and abs(place.box[1] - min(hit.y0, hit.y1)) < 2
    assert d is not None and place.box[2] <= 842 and place.box[3] <= 595  # landscape as displayed


def test_vendor_marks_need_an_id(tmp_path: Path) -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((40, 28), "DocuSign Envelope ID: 8C2F1E6A-3B4D-4E5F-9A1B-2C3D4E5F6A7B", fontsize=8)
    page.insert_text((40, 60), "We may send documents through DocuSign or Adobe Acrobat Sign.", fontsize=10)
    page.insert_text((40, 800), "Adobe Acrobat Sign Transaction ID: CBJCHBCAABAAx7Yq2k9LmP0aZ3", fontsize=7)
    vc._save(doc, tmp_path / "v.pdf")
    marks = analyze_document(tmp_path / "v.pdf").marks
    assert sorted((m.vendor, m.mark_id) for m in marks) == [
        ("adobe_acrobat_sign", "CBJCHBCAABAAx7Yq2k9LmP0aZ3"),
        ("docusign", "8C2F1E6A-3B4D-4E5F-9A1B-2C3D4E5F6A7B"),
    ]
    assert all(m.box is not None for m in marks)


# -- joining ink and places -------------------------------------------------------------------------
def test_join_signed_partial_uncertain_unplaced(tmp_path: Path) -> None:
    path = tmp_path / "c.pdf"
    (r0x0, _, r0x1, r0y1), (r1x0, _, r1x1, r1y1) = _contract(path, "en", "same_line", n=2)
    on0 = (r0x0, r0y1 - 45, r0x1 - 10, r0y1 + 4)
    cases = {
        "signed": [(*on0, 0.8), (r1x0, r1y1 - 45, r1x1, r1y1 + 4, 0.7)],
        "partially_signed": [(*on0, 0.8)],
        "unsigned": [],
        "ambiguous": [(*on0, 0.3)],  # inside the band threshold..threshold+band
        "near": [(r0x0, r0y1 + 30, r0x1, r0y1 + 60, 0.9)],  # below the line, not on it
        "elsewhere": [(100, 700, 250, 760, 0.9)],
    }
    got = {}
    for name, boxes in cases.items():
        v = verdict_for_document(path, [_result(path, 0, boxes)], VerdictConfig())
        got[name] = v.verdict
        if name == "elsewhere":
            assert [i.place_id for i in v.ink] == [None] and v.unplaced_ink
        if name == "near":
            assert v.places[0].status == "uncertain" and v.ink[0].near == v.places[0].place_id
    assert got == {
        "signed": "signed",
        "partially_signed": "partially_signed",
        "unsigned": "unsigned",
        "ambiguous": "needs_review",
        "near": "needs_review",
        "elsewhere": "needs_review",
    }


def test_no_places_no_ink_and_scans(tmp_path: Path) -> None:
    vc._no_sig(tmp_path / "inv.pdf")
    v = verdict_for_document(tmp_path / "inv.pdf", [_result(tmp_path / "inv.pdf", 0, [])])
    assert v.verdict == "no_signature_expected"
    pages = vc._real_pages(extra_real=False)[:2]
    vc.make_scan(tmp_path / "scan.pdf", pages, erase=False)
    ev = analyze_document(tmp_path / "scan.pdf")
    assert [p.text_layer for p in ev.pages] == [False, False]
    assert all("no text layer" in p.reasons[0] for p in ev.pages)
    empty = verdict_for_document(
        tmp_path / "scan.pdf", [_result(tmp_path / "scan.pdf", i, []) for i in range(2)]
    )
    assert empty.verdict == "needs_review"  # never guessed: unsigned or no signature expected?
    inked = verdict_for_document(
        tmp_path / "scan.pdf", [_result(tmp_path / "scan.pdf", 0, [(300, 500, 450, 540, 0.8)])]
    )
    assert inked.verdict == "signed" and inked.ink[0].place_id is None


# -- digital signatures -----------------------------------------------------------------------------
def test_digital_signatures_integrity(tmp_path: Path, pki: tuple[Path, Path]) -> None:
    key, cert = pki
    one, two, flipped, edited = (tmp_path / f"{n}.pdf" for n in ("one", "two", "flipped", "edited"))
    vc.field_contract(one, "fr", 1)
    vc.sign_field(one, one, "Signature1", key, cert, signer_name="Ana Silva")
    vc.field_contract(two, "en", 2)
    vc.sign_field(two, two, "Signature1", key, cert)
    vc.sign_field(two, two, "Signature2", key, cert)
    shutil.copy(one, flipped)
    vc.tamper_bytes(flipped)
    shutil.copy(one, edited)
    vc.tamper_incremental(edited)

    sigs, reasons = check_digital_signatures(one)
    s = sigs["Signature1"]
    assert reasons == [] and s.integrity == "intact" and s.trust == "not_checked"
    assert (s.signer, s.reason, s.location) == ("Ana Silva", "I agree to the terms", "Lisbon")
    assert s.signed_at and s.intact and s.valid and s.coverage == "entire_file"
    sigs2, _ = check_digital_signatures(two)
    assert sigs2["Signature1"].integrity == "intact_with_updates"
    assert sigs2["Signature1"].modification_level == "form_filling"
    assert sigs2["Signature2"].integrity == "intact"
    assert check_digital_signatures(flipped)[0]["Signature1"].integrity == "broken"
    assert check_digital_signatures(edited)[0]["Signature1"].integrity == "modified"

    verdicts = {p.stem: verdict_for_document(p, [_result(p, 0, [])]) for p in (one, two, flipped, edited)}
    assert {k: v.verdict for k, v in verdicts.items()} == {
        "one": "e_signed",
        "two": "e_signed",
        "flipped": "needs_review",
        "edited": "needs_review",
    }
    assert verdicts["one"].places[0].status == "signed_digital"
    assert "broken" in verdicts["flipped"].reasons[0]


# -- bad inputs -------------------------------------------------------------------------------------
def test_bad_inputs_give_reasons_not_crashes(tmp_path: Path) -> None:
    # a signature dictionary with no /ByteRange and junk /Contents
    bad = tmp_path / "malformed.pdf"
    vc.field_contract(bad, "en", 1)
    with pymupdf.open(bad) as d:
        xref = next(iter(d[0].widgets())).xref
        d.xref_set_key(
            xref,
            "V",
            "<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /adbe.pkcs7.detached /Contents <00> >>",
        )
        d.save(tmp_path / "malformed2.pdf")
    v = verdict_for_document(tmp_path / "malformed2.pdf", [_result(bad, 0, [])])
    assert v.verdict == "needs_review"
    assert v.digital_signatures[0].integrity == "unreadable" and "malformed" in v.digital_signatures[0].detail

    # a field with no rectangle, and one whose /Rect is gone
    for name, value in (("norect.pdf", "[0 0 0 0]"), ("nullrect.pdf", "null")):
        src = tmp_path / ("src-" + name)
        vc.field_contract(src, "en", 1)
        with pymupdf.open(src) as d:
            d.xref_set_key(next(iter(d[0].widgets())).xref, "Rect", value)
            d.save(tmp_path / name)
        v = verdict_for_document(tmp_path / name, [_result(tmp_path / name, 0, [])])
        assert v.verdict in ("unsigned", "needs_review")
        fields = [p for p in v.places if p.kind == "field"]
        assert not fields or (fields[0].box is None and "no rectangle" in fields[0].reasons[0])

    # encrypted, opens with the empty user password; signed before encryption is not possible
    # with pymupdf, so this one carries labelled lines
    enc = tmp_path / "enc.pdf"
    doc = pymupdf.open()
    vc.contract_page(doc, "es", 2, "same_line")
    doc.save(enc, encryption=pymupdf.PDF_ENCRYPT_AES_256, owner_pw="owner", user_pw="")
    doc.close()
    v = verdict_for_document(enc, [_result(enc, 0, [])])
    assert v.verdict == "unsigned" and len(v.places) == 2
    assert any("empty user password" in r for r in v.reasons)

    # a text layer in a language without rules (Polish)
    pl = tmp_path / "pl.pdf"
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_textbox(
        (72, 72, 523, 400),
        "Umowa zostaje zawarta pomiedzy Klientem a Wykonawca. Wykonawca wykona uslugi opisane w "
        "zalaczniku, a Klient zaplaci wynagrodzenie w terminie trzydziestu dni. Podpis Klienta: ________",
        fontsize=11,
    )
    doc.save(pl)
    doc.close()
    v = verdict_for_document(pl, [_result(pl, 0, [])])
    assert v.pages[0].places_from == "fields_only"
    assert "language without signature rules" in v.pages[0].reasons[0]


def test_derive_verdicts_one_bad_document_never_stops_the_batch(tmp_path: Path) -> None:
    good, gone, changed = tmp_path / "good.pdf", tmp_path / "gone.pdf", tmp_path / "changed.pdf"
    for p in (good, gone, changed):
        _contract(p, "en", "same_line", 1)
    out = tmp_path / "results"
    out.mkdir()
    lines = []
    for p, doc_id in ((good, vc_sha(good)), (gone, "0" * 64), (changed, "1" * 64)):
        r = _result(p, 0, [])
        r.page = Page(doc_id, 0, r.page.width, r.page.height, r.page.dpi, r.page.pdf_size)
        lines.append(json.dumps({**r.to_dict(), "run_id": "r1"}))
    gone.unlink()
    (out / "results.jsonl").write_text("\n".join(lines) + "\n{cut")
    (out / "quarantine.jsonl").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "kind": "quarantine",
                "source": "x.pdf",
                "doc_id": None,
                "error": "corrupt",
                "reason": "corrupt PDF",
                "run_id": "r1",
            }
        )
        + "\n"
    )
    verdicts = derive_verdicts(out)
    by = {Path(v.source).name: v for v in verdicts}
    assert by["good.pdf"].verdict == "unsigned"
    assert by["gone.pdf"].verdict == "needs_review" and "not found" in by["gone.pdf"].reasons[0]
    assert by["changed.pdf"].verdict == "needs_review" and "changed" in by["changed.pdf"].reasons[0]
    assert by["x.pdf"].verdict == "needs_review" and "quarantined" in by["x.pdf"].reasons[0]
    assert (out / VERDICTS).exists()
    again = read_verdicts(out)
    assert [v.to_dict() for v in again] == [v.to_dict() for v in verdicts]
    assert count_verdicts(again)["needs_review"] == 3


def vc_sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_record_roundtrip_and_version(tmp_path: Path, pki: tuple[Path, Path]) -> None:
    key, cert = pki
    p = tmp_path / "s.pdf"
    vc.field_contract(p, "de", 1)
    vc.sign_field(p, p, "Signature1", key, cert)
    v = verdict_for_document(p, [_result(p, 0, [(100, 700, 250, 760, 0.9)])])
    d = json.loads(json.dumps(v.to_dict()))
    assert d["schema_version"] == 1 and d["kind"] == "verdict"
    assert d["digital_signatures"][0]["trust"] == "not_checked"
    assert DocumentVerdict.from_dict(d).to_dict() == d
    write_verdicts(tmp_path, [v])
    assert read_verdicts(tmp_path)[0].to_dict() == d
    with pytest.raises(ValueError, match="schema_version"):
        DocumentVerdict.from_dict({**d, "schema_version": 2})


# -- the corpus, with the real detector -------------------------------------------------------------
def test_small_corpus_with_the_bundled_detector(tmp_path: Path) -> None:
    """A handful of whole documents through the real pipeline; the costly error must not happen."""
    docs = vc.build_corpus(tmp_path / "corpus", per_kind=1, seed=random.Random(1).randint(0, 0))
    report = vc.evaluate(docs, tmp_path / "corpus" / "results")
    assert report["documents"] == len(docs) >= 10
    assert report["false_signed"] == 0
    rows = {r["doc"].split("-", 1)[1].rsplit(".", 1)[0]: r for r in report["rows"]}
    for name in ("nosig-0", "fields-empty-en", "digital-en", "tampered-en", "unsigned-en-same_line"):
        assert rows[name]["verdict"] == rows[name]["truth"], rows[name]


# -- the corpus's born-digital kinds ---------------------------------------------------------------
def test_corpus_vector_ink_and_typed_names_are_what_they_claim(tmp_path: Path) -> None:
    """Vector-ink contracts carry no image (paths in the content, or Ink annotations only); typed
    names are text in the text layer, the script-like one in its own embedded font."""
    docs = {d.path.name.split("-", 1)[1].rsplit(".", 1)[0]: d for d in vc.build_corpus(tmp_path, per_kind=2)}
    paths = pymupdf.open(str(docs["signed-vector_paths-en-same_line"].path))[0]
    assert not paths.get_images() and paths.first_annot is None
    assert sum(len(d["items"]) for d in paths.get_drawings()) > 50  # a signature's strokes, not a rule
    annot = pymupdf.open(str(docs["signed-ink_annotation-en-same_line"].path))[0]
    assert not annot.get_images()
    assert [a.type[1] for a in annot.annots()] == ["Ink", "Ink"]  # one per signing line
    for font in ("helv", "script-like"):
        d = docs[f"typed-{font}-en-same_line"]
        assert d.truth == "unsigned" and d.notes["font"] == font
        page = pymupdf.open(str(d.path))[0]
        typed = [n for n in vc.NAMES if n in page.get_text() or vc.ascii_name(n) in page.get_text()]
        assert len(typed) >= 2, page.get_text()  # the names read as names in the text layer
        if font == "script-like":
            assert any(f[4] == "inkscript" and f[1] == "ttf" for f in page.get_fonts())  # embedded
    assert docs["partial-ink_annotation-pt-rule_above_label"].truth == "partially_signed"


def test_costly_errors_count_both_directions_over_all_documents() -> None:
    docs = [
        vc.CorpusDoc(Path(f"{k}.pdf"), t, kind)
        for k, (t, kind) in enumerate(
            [
                ("signed", "a"),
                ("signed", "a"),
                ("e_signed", "b"),
                ("unsigned", "b"),
                ("partially_signed", "b"),
                ("no_signature_expected", "c"),
            ]
        )
    ]
    verdicts = ["partially_signed", "needs_review", "unsigned", "signed", "e_signed", "no_signature_expected"]
    rows = [{"truth": d.truth, "verdict": v} for d, v in zip(docs, verdicts, strict=True)]
    c = vc.costly_errors(docs, rows)
    assert c["per_kind"]["a"] == {
        "documents": 2,
        "missed_signed": 1,
        "false_signed": 0,
        "costly": 1,
        "share": 0.5,
    }
    assert c["per_kind"]["b"]["missed_signed"] == 1 and c["per_kind"]["b"]["false_signed"] == 2
    assert c["total"] == {"documents": 6, "missed_signed": 2, "false_signed": 2, "costly": 4, "share": 0.6667}
    assert "| **all** | 6 | 2 | 2 | 4 | 66.7 % |" in vc.costly_table(c)


def test_a_confident_box_on_a_typed_name_does_not_sign_the_place(tmp_path: Path) -> None:
    """A name typed on the line is text-layer words: a box on it is ambiguous (needs review); the same
    box where nothing is typed signs the place."""
    rng = random.Random(3)
    typed, plain = tmp_path / "typed.pdf", tmp_path / "plain.pdf"
    doc = pymupdf.open()
    page, rules = vc.contract_page(doc, "en", 1, "same_line")
    name_box = vc.put_typed_name(page, rules[0], "Emma Clarke", rng, "helv")
    vc._save(doc, typed)
    doc = pymupdf.open()
    vc.contract_page(doc, "en", 1, "same_line")
    vc._save(doc, plain)
    box = (name_box[0] - 2, name_box[1] - 1, name_box[2] + 2, name_box[3] + 1, 0.9)
    v = verdict_for_document(typed, [_result(typed, 0, [box])], VerdictConfig(threshold=0.2))
    assert v.verdict == "needs_review", v.reasons
    assert any("typed text" in r for r in v.reasons) and v.ink[0].ambiguous
    v = verdict_for_document(plain, [_result(plain, 0, [box])], VerdictConfig(threshold=0.2))
    assert v.verdict == "signed", v.reasons


@pytest.mark.parametrize("annotation", [True, False], ids=["ink_annotation", "paths"])
def test_hand_drawn_vector_ink_on_a_place_is_never_empty(tmp_path: Path, annotation: bool) -> None:
    """A signature drawn with a stylus is in the file whatever the detector saw: a place it lies on
    that no box covers is uncertain (review), not empty (a costly `partially_signed`)."""
    rng = random.Random(5)
    crops = vc.signature_crops()
    p = tmp_path / "drawn.pdf"
    doc = pymupdf.open()
    page, rules = vc.contract_page(doc, "en", 2, "rule_above_label")
    drawn = [vc.put_vector_ink(page, r, crops[k], rng, annotation) for k, r in enumerate(rules)]
    vc._save(doc, p)
    ev = analyze_document(p)
    assert len(ev.freehand[0]) == 2
    seen = (*drawn[0], 0.9)  # the detector saw the first signature only
    v = verdict_for_document(p, [_result(p, 0, [seen])], VerdictConfig(threshold=0.2))
    assert v.verdict == "needs_review", v.reasons
    status = {pl.place_id: (pl.status, pl.reasons) for pl in v.places}
    assert sorted(s for s, _ in status.values()) == ["signed_ink", "uncertain"]
    assert any("hand-drawn vector ink" in r for s, rs in status.values() for r in rs)
    both = [seen, (*drawn[1], 0.9)]
    assert verdict_for_document(p, [_result(p, 0, both)], VerdictConfig(threshold=0.2)).verdict == "signed"


def test_rules_frames_and_tables_are_not_hand_drawn_ink(tmp_path: Path) -> None:
    p = tmp_path / "frames.pdf"
    doc = pymupdf.open()
    page, rules = vc.contract_page(doc, "en", 2, "rule_above_label")
    for x0, y0, x1, _y1 in rules:  # a rounded frame around each signing line, a table below
        page.draw_rect(pymupdf.Rect(x0 - 4, y0 - 50, x1 + 4, y0 + 20), radius=0.1, width=0.8)
    for k in range(8):
        page.draw_line((72, 700 + 12 * k), (523, 700 + 12 * k), width=0.5)
        page.draw_line((72 + 56 * k, 700), (72 + 56 * k, 784), width=0.5)
    vc._save(doc, p)
    assert analyze_document(p).freehand == {0: []}
    assert verdict_for_document(p, [_result(p, 0, [])], VerdictConfig(threshold=0.2)).verdict == "unsigned"


def test_hand_drawn_ink_off_the_places_or_without_places_goes_to_review(tmp_path: Path) -> None:
    rng = random.Random(6)
    crop = vc.signature_crops()[0]
    off, letter = tmp_path / "off.pdf", tmp_path / "letter.pdf"
    doc = pymupdf.open()
    page, _ = vc.contract_page(doc, "en", 1, "same_line")
    vc.put_vector_ink(page, (300, 700, 520, 712), crop, rng, annotation=True)  # far from the line
    vc._save(doc, off)
    v = verdict_for_document(off, [_result(off, 0, [])], VerdictConfig(threshold=0.2))
    assert v.verdict == "needs_review" and "hand-drawn vector ink elsewhere" in v.reasons[0]
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_textbox((72, 110, 523, 330), vc.NO_SIG, fontsize=11)
    vc.put_vector_ink(page, (72, 600, 300, 612), crop, rng, annotation=False)
    vc._save(doc, letter)
    v = verdict_for_document(letter, [_result(letter, 0, [])], VerdictConfig(threshold=0.2))
    assert v.verdict == "needs_review" and "no place" in v.reasons[0]


def test_an_image_placed_on_a_place_is_never_empty(tmp_path: Path) -> None:
    """What e-signing tools write for an uploaded or drawn signature is an image on the line: a
    place it lies on that no box covers is uncertain (review), never empty (a costly `unsigned`
    or `partially_signed`), the case issue 33 opened with. Page-sized images (a scan under an OCR
    text layer, a background) and a logo off the lines leave the places empty."""
    rng = random.Random(8)
    crops = vc.signature_crops()
    placed, plain = tmp_path / "placed.pdf", tmp_path / "plain.pdf"
    doc = pymupdf.open()
    page, rules = vc.contract_page(doc, "en", 2, "same_line")
    for k, r in enumerate(rules):
        vc.put_ink(page, r, crops[k], rng)
    vc._save(doc, placed)
    ev = analyze_document(placed)
    assert len(ev.images[0]) == 2
    v = verdict_for_document(placed, [_result(placed, 0, [])], VerdictConfig(threshold=0.2))
    assert v.verdict == "needs_review", v.reasons
    assert all(pl.status == "uncertain" and "image placed on the place" in pl.reasons[0] for pl in v.places)
    seen = [(*ev.images[0][0], 0.9), (*ev.images[0][1], 0.9)]
    assert (
        verdict_for_document(placed, [_result(placed, 0, seen)], VerdictConfig(threshold=0.2)).verdict
        == "signed"
    )
    partly = verdict_for_document(placed, [_result(placed, 0, seen[:1])], VerdictConfig(threshold=0.2))
    assert partly.verdict == "needs_review" and sorted(pl.status for pl in partly.places) == [
        "signed_ink",
        "uncertain",
    ]

    doc = pymupdf.open()
    page, rules = vc.contract_page(doc, "en", 2, "same_line")
    background = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 60, 80), False)
    background.clear_with(250)
    page.insert_image(page.rect, pixmap=background, overlay=False)  # the page's paper, under the text
    page.insert_image(pymupdf.Rect(460, 40, 540, 80), stream=vc._png(crops[2]))  # a logo at the top
    vc._save(doc, plain)
    ev = analyze_document(plain)
    assert ev.images[0] == [pytest.approx((460.0, 40.0, 540.0, 80.0), abs=30)]
    v = verdict_for_document(plain, [_result(plain, 0, [])], VerdictConfig(threshold=0.2))
    assert v.verdict == "unsigned", v.reasons
