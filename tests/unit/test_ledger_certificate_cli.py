"""The hash-chained ledger, the signed certificate and the `dereg` CLI that checks both."""

from __future__ import annotations

import json
import multiprocessing

import pytest
import sqlalchemy as sa

from dereg.cli import main as dereg
from dereg.evidence.certificate import sign_certificate, verify_certificate, write_certificate
from dereg.evidence.ledger import Ledger, LedgerVerification
from dereg.evidence.store import open_store
from dereg.keys import Keyring, public_key_pem


def _fill(ledger: Ledger, n: int = 5, run_id: str = "r1"):
    return [
        ledger.append(
            company_id="c1",
            run_id=run_id,
            stage=f"s{i}",
            event="succeeded",
            actor="ops",
            details={"i": i, "note": "计数"},
        )
        for i in range(n)
    ]


def test_ledger_chains_and_looks_up_entries(store_url):
    ledger = Ledger(open_store(store_url))
    entries = _fill(ledger)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:], strict=False))
    assert ledger.head() == entries[-1]
    assert ledger.get(entries[2].entry_id) == entries[2]
    assert ledger.latest(company_id="c1", run_id="r1", stage="s3", event="succeeded") == entries[3]
    assert ledger.latest(company_id="c1", run_id="r2", stage="s3", event="succeeded") is None
    result = ledger.verify()
    assert result.ok and result.entries_checked == 5


def test_an_altered_entry_is_found(store_url):
    store = open_store(store_url)
    ledger = Ledger(store)
    entries = _fill(ledger)
    with store.begin() as conn:
        conn.execute(sa.text("UPDATE ledger SET details = :d WHERE seq = 3"), {"d": json.dumps({"i": 99})})
    result = ledger.verify()
    assert not result.ok
    assert result.first_broken_seq == 3 and result.first_broken_entry_id == entries[2].entry_id
    assert "altered" in result.reason


def test_removing_the_last_entries_is_found(store_url):
    store = open_store(store_url)
    ledger = Ledger(store)
    _fill(ledger)
    with store.begin() as conn:
        conn.execute(sa.text("DELETE FROM ledger WHERE seq >= 4"))
    result = ledger.verify()
    assert not result.ok and "removed from the end" in result.reason


def _append_many(url: str, worker: int) -> None:
    from dereg.evidence.store import open_store as open_

    ledger = Ledger(open_(url))
    for i in range(15):
        ledger.append(company_id="c", run_id=f"w{worker}", stage="s", event=str(i), actor="a", details={})


def test_concurrent_appends_keep_one_chain(store_url):
    open_store(store_url)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(store_url, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ledger = Ledger(open_store(store_url))
    entries = ledger.entries()
    assert [e.seq for e in entries] == list(range(1, 46))
    assert ledger.verify().ok


def _certificate(store_url, keyring):
    ledger = Ledger(open_store(store_url))
    cited = _fill(ledger, 3)
    body = {
        "title": "Certificate",
        "company": {"id": "c1", "name_zh": "小星星"},
        "dry_run": False,
        "ledger": {
            "head_hash": cited[-1].hash,
            "entries": [{"stage": e.stage, "entry_id": e.entry_id, "hash": e.hash} for e in cited],
        },
    }
    return sign_certificate(body, keyring), ledger


def test_a_signed_certificate_verifies_with_its_ledger(store_url, keyring):
    cert, _ = _certificate(store_url, keyring)
    result = verify_certificate(cert, public_key=keyring.public_key(), store=open_store(store_url))
    assert result.ok, result.problems
    assert any("cited ledger entries" in c for c in result.checks)
    assert "the ledger head cited by the certificate is in the chain" in result.checks


def test_a_precomputed_chain_result_is_used_and_a_foreign_head_is_reported(store_url, keyring):
    cert, ledger = _certificate(store_url, keyring)
    store = open_store(store_url)
    broken = LedgerVerification(False, 1, 2, "L000002-x", "entry L000002-x: altered")
    result = verify_certificate(cert, store=store, chain=broken)
    assert not result.ok and "the ledger's hash chain is broken: entry L000002-x: altered" in result.problems
    assert verify_certificate(cert, store=store, chain=ledger.verify()).ok

    foreign = json.loads(json.dumps(cert))
    foreign["body"]["ledger"]["head_hash"] = "f" * 64
    foreign = sign_certificate(foreign["body"], keyring)
    problems = verify_certificate(foreign, store=store).problems
    assert problems == ["the ledger head hash cited by the certificate is not in the ledger"]


def test_an_altered_body_a_foreign_key_or_a_missing_entry_is_invalid(store_url, keyring, tmp_path):
    cert, _ = _certificate(store_url, keyring)
    altered = json.loads(json.dumps(cert))
    altered["body"]["company"]["id"] = "c2"
    assert "altered after signing" in " ".join(verify_certificate(altered).problems)

    other = Keyring.create(tmp_path / "other.json")
    assert "different key" in " ".join(verify_certificate(cert, public_key=other.public_key()).problems)

    store = open_store(store_url)
    with store.begin() as conn:
        conn.execute(sa.text("DELETE FROM ledger WHERE seq = 2"))
    result = verify_certificate(cert, store=store)
    assert not result.ok
    assert any("is not in the ledger" in p for p in result.problems)

    assert not verify_certificate({"format": "something else"}).ok
    assert not verify_certificate(
        {"format": "dereg-certificate/1", "body": {}, "signature": {"value": "%%"}}
    ).ok


def test_cli_verifies_a_written_certificate(store_url, keyring, tmp_path, capsys, monkeypatch):
    cert, _ = _certificate(store_url, keyring)
    json_path, html_path = write_certificate(cert, tmp_path / "out", "certificate")
    assert "<script" not in html_path.read_text() and "小星星" in html_path.read_text()
    pem = tmp_path / "signing.pem"
    pem.write_text(public_key_pem(keyring.public_key()))

    assert dereg(["verify-certificate", str(json_path), "--public-key", str(pem), "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("VALID") and "matches the pinned public key" in out

    data = json.loads(json_path.read_text())
    data["body"]["dry_run"] = True
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    assert dereg(["verify-certificate", str(tampered), "--no-ledger"]) == 1
    assert "INVALID" in capsys.readouterr().out

    assert dereg(["verify-certificate", str(tmp_path / "missing.json"), "--no-ledger"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_verify_ledger_names_the_first_broken_entry(store_url, capsys):
    store = open_store(store_url)
    entries = _fill(Ledger(store))
    assert dereg(["verify-ledger", "--store", store_url]) == 0
    with store.begin() as conn:
        conn.execute(sa.text("UPDATE ledger SET actor = 'mallory' WHERE seq = 2"))
    assert dereg(["verify-ledger", "--store", store_url]) == 1
    assert entries[1].entry_id in capsys.readouterr().out


def test_cli_names_the_store_it_checked_and_reports_an_unusable_one(store_url, keyring, tmp_path, capsys):
    """A certificate checked against another deployment's store says which store it read, and a store
    that cannot be used is a one-line error, not a traceback."""
    from devtools.stack.ports import free_port

    cert, _ = _certificate(store_url, keyring)
    json_path, _ = write_certificate(cert, tmp_path / "out", "certificate")
    other = f"sqlite:///{tmp_path / 'other.db'}"
    open_store(other)
    assert dereg(["verify-certificate", str(json_path), "--store", other]) == 1
    out = capsys.readouterr().out
    assert f"the ledger was read from {other}" in out and "--store URL" in out

    closed = f"postgresql+psycopg2://auditor:s3cret@127.0.0.1:{free_port()}/nowhere"
    for argv in (["verify-ledger", "--store", closed], ["verify-ledger", "--store", "not a url"]):
        assert dereg(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("dereg: error: cannot use the database:") and "s3cret" not in err
        assert "Traceback" not in err


def test_cli_keyring_init_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "k.json"
    assert dereg(["keyring", "init", "--path", str(path)]) == 0
    before = path.read_text()
    assert dereg(["keyring", "init", "--path", str(path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert path.read_text() == before
    out = tmp_path / "pub.pem"
    assert dereg(["keyring", "public-key", "--path", str(path), "--out", str(out)]) == 0
    assert out.read_text().startswith("-----BEGIN PUBLIC KEY-----")


@pytest.mark.integration
def test_ledger_on_postgresql(pg_url):
    ledger = Ledger(open_store(pg_url))
    _fill(ledger, 4)
    assert ledger.verify().ok and ledger.head().seq == 4


def test_cli_says_when_the_signer_is_not_authenticated(store_url, keyring, tmp_path, capsys, monkeypatch):
    """Without --public-key (and no keyring of this deployment) the key comes from the certificate
    itself: anyone can make such a certificate, so the verdict is not VALID and the exit code is 3."""
    cert, _ = _certificate(store_url, keyring)
    json_path, _ = write_certificate(cert, tmp_path / "out", "certificate")
    monkeypatch.setenv("DEREG_KEYRING", str(tmp_path / "absent.json"))
    for extra in (["--store", store_url], ["--no-ledger"]):
        assert dereg(["verify-certificate", str(json_path), *extra]) == 3
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert "SIGNER NOT AUTHENTICATED" in last and ": VALID" not in last and "--public-key" in last
    # an impostor's certificate, signed by its own key, is intact too: exactly what 3 warns about
    impostor = sign_certificate(cert["body"], Keyring.create(tmp_path / "impostor.json"))
    impostor_path, _ = write_certificate(impostor, tmp_path / "impostor", "certificate")
    assert dereg(["verify-certificate", str(impostor_path), "--no-ledger"]) == 3
    capsys.readouterr()
    # this deployment's keyring pins the key: VALID for ours, INVALID for the impostor's
    monkeypatch.setenv("DEREG_KEYRING", str(keyring.path))
    assert dereg(["verify-certificate", str(json_path), "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("VALID") and f"pinned from this deployment's keyring {keyring.path}" in out
    assert dereg(["verify-certificate", str(impostor_path), "--no-ledger"]) == 1
