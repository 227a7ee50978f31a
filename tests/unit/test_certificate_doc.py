"""The certificate a person reads: one bilingual page (Chinese first), the NIST SP 800-88 sample
certificate's fields plus Dereg's evidence, written beside the signed JSON as HTML and PDF; the PDF
is opened and its text checked."""

from __future__ import annotations

import hashlib

import pytest

from dereg.evidence.certificate import sign_certificate, write_certificate
from dereg.keys import Keyring


def _body(**changes) -> dict:
    body = {
        "title": "Certificate of personal-data erasure / 个人信息删除证明",
        "dry_run": False,
        "company": {"id": "star_academy", "name_zh": "小星星培训学校", "name_en": "Little Star Academy"},
        "legal_basis": "PIPL Art. 47(1)(1)",
        "reason": "deregistration",
        "run_id": "manual__2026-12-31T00:00:00",
        "operator": "ops",
        "approver": "approver",
        "approved_plan_hash": "ab" * 32,
        "started_at": "2026-12-31T01:00:00+00:00",
        "finished_at": "2026-12-31T02:00:00+00:00",
        "tool": {"name": "dereg", "version": "0.9"},
        "stores": [
            {
                "source_id": "school_db",
                "store": {
                    "conn_id": "school",
                    "type": "postgres",
                    "location": "postgresql://127.0.0.1:5432/school",
                },
                "plan": {"rows_to_delete": 1234, "rows_to_pseudonymize": 56},
                "method": {"delete": "DELETE in batches by primary key", "pseudonymize": "keyed-hash tokens"},
                "verification": {"ok": True},
                "residual_risks": ["WAL segments until they are recycled"],
                "inferred_links": [{"link": "lesson(student_id) -> students(id)", "kind": "inferred"}],
            },
            {
                "source_id": "uploads",
                "store": {"type": "s3", "location": "s3://crm/uploads"},
                "plan": {"action": "delete"},
                "objects_affected": {"versions_deleted": 3},
                "method": {"delete": "every version and delete marker"},
                "verification": {"ok": True},
                "residual_risks": [],
            },
        ],
        "backup_kept": [
            {
                "source_id": "school_db",
                "backup_id": "school_db-20261231-abcd",
                "bucket": "offsite",
                "retain_until": "2036-12-31T00:00:00+00:00",
                "object_lock": True,
            }
        ],
        "verification_method": "full scan of every value",
        "verification_result": "passed",
        "ledger": {"head_hash": "cd" * 32, "checkpoints": "s3://offsite/closures/star", "entries": []},
        **changes,
    }
    return body


@pytest.fixture
def keyring(tmp_path):
    return Keyring.create(tmp_path / "keyring.json")


def test_the_pdf_is_one_bilingual_page_with_the_sanitization_fields(keyring, tmp_path):
    pypdf = pytest.importorskip("pypdf")
    cert = sign_certificate(_body(), keyring)
    json_path, html_path = write_certificate(cert, tmp_path, "certificate")
    pdf_path = tmp_path / "certificate.pdf"
    assert pdf_path.read_bytes()[:5] == b"%PDF-"
    pages = pypdf.PdfReader(str(pdf_path)).pages
    first = pages[0].extract_text()
    flat = "".join(first.split())  # the PDF wraps long values over lines
    # Chinese first, English beside
    assert first.index("个人信息删除证明") < first.index("Certificate of personal-data sanitization")
    for text in (
        "小星星培训学校",  # who
        "Performed by",
        "ops",
        "approver",
        "postgresql://127.0.0.1:5432/school",  # which store
        "s3://crm/uploads",
        "1,234",  # rows deleted
        "keyed-hash tokens",  # method
        "通过",  # verification result
        "2026-12-31",  # date
        "school_db-20261231-abcd",  # backup kept, and until when
        "2036-12-31",
        "WAL segments until they are recycled",  # residual risk
        "lesson(student_id) -> students(id)",  # inferred link
        "dereg verify-certificate certificate.json",  # how to verify
    ):
        assert "".join(text.split()) in flat, text
    # the hash of the signed JSON is printed
    assert hashlib.sha256(json_path.read_bytes()).hexdigest() in flat
    # the appendix (the whole signed content) starts on a page of its own
    assert len(pages) >= 2 and "Appendix" not in first and "Appendix" in pages[1].extract_text()
    assert "小星星培训学校" in html_path.read_text(encoding="utf-8")


def test_a_dry_run_says_so_first_and_values_are_escaped(keyring, tmp_path):
    body = _body(dry_run=True, approver=None, verification_result="not run (dry run)")
    body["company"]["name_en"] = "<script>alert(1)</script>"
    cert = sign_certificate(body, keyring)
    _, html_path = write_certificate(cert, tmp_path, "dry-run-report")
    text = html_path.read_text(encoding="utf-8")
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert text.index("演练报告（非删除证明）") < text.index("NOT a certificate of erasure")
