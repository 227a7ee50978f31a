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


def _subject_shred_body() -> dict:
    """A subject shred's certificate as `dereg shred-subject` signs it: no stores, no approver, no
    checkpoints; the backups it acted on and its residual risks at the top level."""
    return {
        "title": "Certificate of one subject's erasure from locked backups / 单个个人信息主体的备份删除证明",
        "kind": "subject_shred",
        "dry_run": False,
        "company": {"id": "star_academy"},
        "subject_ref": "42",
        "statement": "Every copy of the key of subject 42 in the backups listed was destroyed.",
        "backups_shredded_for_subject": [
            {
                "backup_id": "bk-20261231T000000Z-0a0b0c0d",
                "source_id": "school_db",
                "bucket": "offsite",
                "retain_until": "2036-12-31T00:00:00+00:00",
            }
        ],
        "backups_without_subject_keys": [],
        "residual_risks": ["the subject's old group block stays locked as ciphertext"],
        "run_id": "shred-subject-20261231T000000Z-0a0b0c0d",
        "operator": "dereg shred-subject",
        "approver": None,
        "started_at": "2026-12-31T01:00:00+00:00",
        "finished_at": "2026-12-31T01:00:00+00:00",
        "stores": [],
        "backup_kept": [],
        "method": "crypto-shredding of one per-subject key",
        "verification_method": "both copies of the key set read back",
        "verification_result": "passed",
        "ledger": {"head_hash": "cd" * 32, "entries": []},
    }


def _final_body() -> dict:
    body = _subject_shred_body()
    for key in ("subject_ref", "backups_shredded_for_subject", "method"):
        body.pop(key)
    return {
        **body,
        "title": "Final certificate: no copy of the customers' data remains / 最终证明：客户数据已无任何副本",
        "kind": "final",
        "statement": "Every backup of this company's customer data was destroyed.",
        "closure_certificate": {"run_id": "manual__2026-01-01", "sha256": "ef" * 32, "issued_at": None},
        "backups_destroyed": [
            {
                "backup_id": "bk-20160101T000000Z-01020304",
                "source_id": "school_db",
                "bucket": "offsite",
                "retain_until": "2026-01-01T00:00:00+00:00",
                "status": "destroyed",
                "objects_left_locked": 0,
            }
        ],
        "residual_risks": ["the object store's own replicas"],
        "operator": "retention_sweep",
    }


@pytest.mark.parametrize("body", [_subject_shred_body(), _final_body()], ids=["subject_shred", "final"])
def test_a_subject_shred_or_final_certificate_shows_its_own_title_backups_and_risks(body, keyring, tmp_path):
    """The page is not the closure's with its fields empty: its own title, the backups it acted on
    (the media), its residual risks, no "dry run" beside an absent approver, and a verify command
    that `dereg` accepts as printed (no `--checkpoints` without a value)."""
    import html as html_module
    import re
    import shlex

    from dereg.cli import build_parser

    pypdf = pytest.importorskip("pypdf")
    cert = sign_certificate(body, keyring)
    json_path, html_path = write_certificate(cert, tmp_path, "cert")
    first = pypdf.PdfReader(str(tmp_path / "cert.pdf")).pages[0].extract_text()
    flat = "".join(first.split())
    zh, en = body["title"].rsplit(" / ", 1)[1], body["title"].rsplit(" / ", 1)[0]
    assert first.index(zh) < first.index(en[:30])  # Chinese first
    assert "个人信息删除证明" not in first.split("\n")[0]
    backup = (body.get("backups_shredded_for_subject") or body.get("backups_destroyed"))[0]
    for text in (
        backup["backup_id"],
        backup["bucket"],
        "密钥销毁",
        body["residual_risks"][0],
        body["statement"],
    ):
        assert "".join(text.split()) in flat, text
    assert "dry run" not in first and "演练" not in first
    assert "Appendix" not in first  # one page, the appendix after it
    if body["kind"] == "final":
        assert body["closure_certificate"]["sha256"] in flat
    else:
        assert "42" in first
    page = html_path.read_text(encoding="utf-8")
    command = re.search(r"<code>(dereg verify-certificate [^<]*)</code>", page).group(1)
    argv = shlex.split(html_module.unescape(command))[1:]
    args = build_parser().parse_args(argv)
    assert args.path == json_path.name and args.checkpoints is None
