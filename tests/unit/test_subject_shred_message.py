"""What `dereg shred-subject` prints: a run repeated for a subject already shredded says so, rather
than announcing a new erasure (the ledger entry records `key_was_already_gone`)."""

from __future__ import annotations

from dereg.subjectshred import done_message


def _result(*already: bool) -> dict:
    return {
        "company_id": "school",
        "subject_ref": "42",
        "backups": [{"backup_id": f"bk-{i}", "key_was_already_gone": a} for i, a in enumerate(already)],
        "ledger_entry": "L000002-abcdef12",
        "certificate": "/out/cert.json",
    }


def test_a_first_shred_says_crypto_shredded():
    text = done_message(_result(False))
    assert text.startswith("subject 42 of school crypto-shredded in 1 backup(s) (bk-0)")
    assert "already" not in text and text.endswith(
        "ledger entry L000002-abcdef12; certificate /out/cert.json"
    )


def test_a_repeated_shred_says_it_was_already_done():
    text = done_message(_result(True, False))
    assert "crypto-shredded in 1 backup(s) (bk-1)" in text
    assert "already shredded before in 1 backup(s) (bk-0): checked again" in text
    assert "crypto-shredded" not in done_message(_result(True))


def test_a_manifest_that_says_enabled_but_sealed_nothing_has_no_subject_keys():
    """MariaDB backups given a plan used to record `enabled: true` with no sealed table: shred-subject
    must refuse them as backups without per-subject keys, not answer "the ref matches no subject"."""
    from dereg.subjectshred import without_subject_keys

    plain = {"version": 7, "tables": {"students": {"encoding": "mysql-text"}}}
    assert "no table of it is sealed" in without_subject_keys({**plain, "subject_keys": {"enabled": True}})
    assert without_subject_keys({**plain, "subject_keys": {"enabled": False, "reason": "off"}}) == "off"
    assert "before per-subject keys" in without_subject_keys({"version": 4, "tables": {}})
    sealed = {
        "version": 7,
        "subject_keys": {"enabled": True},
        "tables": {"students": {"sealed": {"rows": 0}}},
    }
    assert without_subject_keys(sealed) is None
