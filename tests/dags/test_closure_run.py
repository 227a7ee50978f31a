"""The demo closure DAG, run for real with `dag.test()` against SeaweedFS, an SMTP server and SQLite.

The approval is answered from another process through Airflow's REST API, as a second user.
"""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
import yaml

from dereg.keys import Keyring, public_key_pem
from devtools.stack.ports import free_port
from tests.dags.harness import ROOT, AirflowSandbox, store_connections

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "closure__demo_academy"
PERSON_TABLES = ("students", "guardians", "contracts", "attendance", "notes")
STUDENTS = 60


def _conf(**overrides) -> dict:
    return {
        "dry_run": False,
        "reason": "test: demo academy deregisters",
        "notice_window_days": 0,
        **overrides,
    }


@pytest.fixture
def closure(tmp_path, seaweed, smtp_sink):
    """A seeded demo school, a keyring, a compliance store and an Airflow home wired to real servers."""
    from devtools.demo.seed import seed

    source = tmp_path / "demo_academy.db"
    counts = seed(f"sqlite:///{source}", students=STUDENTS)
    companies = tmp_path / "companies"
    companies.mkdir()
    # Each closure writes its backups and ledger checkpoints under a prefix of its own: the session's
    # store is shared, and another test's checkpoints (signed by its own keyring) would rightly make
    # this one's `verify-ledger --checkpoints` report a foreign writer.
    manifest = yaml.safe_load((ROOT / "include/companies/demo-academy.yaml").read_text())
    prefix = f"{manifest['backup']['prefix']}/{tmp_path.name}"
    manifest["backup"]["prefix"] = prefix
    (companies / "demo-academy.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True))
    keyring_path = tmp_path / "keyring.json"
    Keyring.create(keyring_path)
    store_url = f"sqlite:///{tmp_path / 'compliance.db'}"
    env = {
        "DEREG_STATE_DIR": str(tmp_path / "state"),
        "DEREG_STORE_URL": store_url,
        "DEREG_KEYRING": str(keyring_path),
        "DEREG_OUTPUT_DIR": str(tmp_path / "output"),
        "DEREG_COMPANIES_DIR": str(companies),
        "AIRFLOW_CONN_DEMO_ACADEMY_DB": json.dumps({"conn_type": "sqlite", "host": str(source)}),
        **store_connections(seaweed, smtp_sink),
    }

    class Closure:
        pass

    c = Closure()
    c.tmp, c.source, c.counts, c.companies, c.store_url = tmp_path, source, counts, companies, store_url
    c.prefix = prefix
    c.keyring_path, c.env, c.smtp, c.seaweed = keyring_path, env, smtp_sink, seaweed
    c.engine = sa.create_engine(f"sqlite:///{source}")
    c.sandbox = lambda: AirflowSandbox(tmp_path / "airflow", env=env)
    yield c
    c.engine.dispose()


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
            for t in (*PERSON_TABLES, "accounting_records", "courses")
        }


def _s3(seaweed):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint_url,
        aws_access_key_id=seaweed.access_key,
        aws_secret_access_key=seaweed.secret_key,
        region_name="cn-north-1",
    )


def _ledger(store_url: str):
    from dereg.evidence.ledger import Ledger
    from dereg.evidence.store import open_store

    return Ledger(open_store(store_url))


def test_demo_closure_runs_end_to_end_with_a_second_person_approving(closure, monkeypatch):
    from dereg.backup.restore import restore_and_verify
    from dereg.cli import main as dereg_cli
    from dereg.connections import S3Location
    from devtools.demo.seed import planted_values

    with closure.engine.connect() as conn:
        addresses = {
            r[0].strip().lower()
            for r in conn.execute(sa.text("SELECT email FROM guardians"))
            if r[0] and r[0].strip()
        }
    planted = planted_values(f"sqlite:///{closure.source}")
    before = _counts(closure.engine)
    # customer files in a versioned bucket: an enrolment form (overwritten once) and a photo
    files = _s3(closure.seaweed)
    files.create_bucket(Bucket="crm-uploads")
    files.put_bucket_versioning(Bucket="crm-uploads", VersioningConfiguration={"Status": "Enabled"})
    mobile = next(iter(planted["cn_mobile"]))
    for version in range(2):
        files.put_object(
            Bucket="crm-uploads",
            Key="uploads/forms/f1.csv",
            Body=f"姓名,手机\n张伟,{mobile}\n{version}\n".encode(),
        )
    files.put_object(Bucket="crm-uploads", Key="uploads/photos/1.jpg", Body=b"\xff\xd8\xff" + bytes(5000))
    files.put_object(Bucket="crm-uploads", Key="brochures/a.txt", Body=b"open day")
    path = closure.companies / "demo-academy.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["object_sources"] = [
        {"id": "uploads", "conn_id": "dereg_offsite", "bucket": "crm-uploads", "prefix": "uploads"}
    ]
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True))
    assert before["students"] == STUDENTS and before["accounting_records"] > 0

    sandbox = closure.sandbox()
    proc = sandbox.start_dag_test(DAG_ID, _conf())
    answer = sandbox.answer(DAG_ID, user="approver")
    result, log = sandbox.finish(proc)
    assert answer["status"] == 200, answer
    assert result["state"] == "success", (result, log[-6000:])
    assert set(result["tasks"].values()) == {"success"}, result

    # The customers are gone; the accounting records are kept, pseudonymised.
    after = _counts(closure.engine)
    assert {t: after[t] for t in PERSON_TABLES} == dict.fromkeys(PERSON_TABLES, 0)
    assert after["accounting_records"] == before["accounting_records"]
    assert after["courses"] == before["courses"]
    with closure.engine.connect() as conn:
        names = [r[0] for r in conn.execute(sa.text("SELECT payer_name FROM accounting_records"))]
        cards = [r[0] for r in conn.execute(sa.text("SELECT payer_bank_card FROM accounting_records"))]
    assert all(n is None or n.startswith("tok_") for n in names) and any(names)
    assert all(c is None or c.startswith("tok_") for c in cards)
    raw = closure.source.read_bytes()
    leftovers = [kind for kind, values in planted.items() for v in values if v.encode() in raw]
    assert leftovers == [], f"{len(leftovers)} planted values still in the database file: {set(leftovers)}"

    # Every version of the customer files is gone; the rest of the bucket is not touched.
    left = files.list_object_versions(Bucket="crm-uploads")
    assert {v["Key"] for v in left.get("Versions", [])} == {"brochures/a.txt"}
    assert not left.get("DeleteMarkers")

    # Exactly one notice per reachable address.
    messages = closure.smtp.messages()
    assert len(messages) == len(addresses)
    assert {m["To"].addresses[0].addr_spec.lower() for m in messages} == addresses

    # The certificate verifies, against the key and the ledger.
    certs = list((closure.tmp / "output").rglob("certificate.json"))
    assert len(certs) == 1
    cert = json.loads(certs[0].read_text())
    assert cert["body"]["approver"] == "approver" and cert["body"]["dry_run"] is False
    pem = closure.tmp / "signing.pem"
    pem.write_text(public_key_pem(Keyring.load(closure.keyring_path).public_key()))
    assert (
        dereg_cli(
            ["verify-certificate", str(certs[0]), "--store", closure.store_url, "--public-key", str(pem)]
        )
        == 0
    )
    assert _ledger(closure.store_url).verify().ok

    # Every stage anchored the ledger off-site: signed checkpoints under Object Lock, which match it.
    checkpoints = cert["body"]["ledger"]["checkpoints"]
    assert checkpoints == f"s3://dereg-demo-academy/{closure.prefix}"
    listed = files.list_objects_v2(
        Bucket="dereg-demo-academy", Prefix=f"{closure.prefix}/_ledger/checkpoints/"
    )
    assert listed["KeyCount"] >= 12, listed.get("Contents")
    for key, value in (
        ("AWS_ENDPOINT_URL", closure.seaweed.endpoint_url),
        ("AWS_ACCESS_KEY_ID", closure.seaweed.access_key),
        ("AWS_SECRET_ACCESS_KEY", closure.seaweed.secret_key),
    ):
        monkeypatch.setenv(key, value)
    anchored = ["--store", closure.store_url, "--public-key", str(pem), "--checkpoints", checkpoints]
    assert dereg_cli(["verify-ledger", *anchored]) == 0
    assert dereg_cli(["verify-certificate", str(certs[0]), *anchored]) == 0

    # The backup taken before the erasure still restores.
    backup = cert["body"]["backup_kept"][0]
    location = S3Location(
        endpoint_url=closure.seaweed.endpoint_url,
        access_key=closure.seaweed.access_key,
        secret_key=closure.seaweed.secret_key,
        region="cn-north-1",
        bucket=backup["bucket"],
        prefix=closure.prefix,
    )
    from dereg.evidence.store import open_store

    report = restore_and_verify(
        backup["backup_id"],
        location=location,
        keyring=Keyring.load(closure.keyring_path),
        store=open_store(closure.store_url),
    )
    assert report.ok, report.problems
    assert report.tables["students"]["restored_rows"] == STUDENTS
    # ... and so does the backup of the customer files, which the certificate lists as a store
    uploads = next(b for b in cert["body"]["backup_kept"] if b["source_id"] == "uploads")
    report = restore_and_verify(
        uploads["backup_id"],
        location=location,
        keyring=Keyring.load(closure.keyring_path),
        store=open_store(closure.store_url),
    )
    assert report.ok and report.tables["objects"]["restored_rows"] == 2, report.problems
    store = next(s for s in cert["body"]["stores"] if s["source_id"] == "uploads")
    assert store["objects_affected"]["versions_deleted"] == 3 and store["verification"]["ok"]
    # Nothing personal in the task logs.
    assert not [v for values in planted.values() for v in values if v in log]


def test_dry_run_changes_nothing_and_needs_no_approval(closure):
    before = _counts(closure.engine)
    result, log = closure.sandbox().run_dag(DAG_ID, _conf(dry_run=True))
    assert result["state"] == "success", (result, log[-6000:])
    assert _counts(closure.engine) == before
    assert closure.smtp.messages() == []
    reports = list((closure.tmp / "output").rglob("dry-run-report.json"))
    assert len(reports) == 1
    body = json.loads(reports[0].read_text())["body"]
    assert body["dry_run"] is True and "NOT a certificate" in body["title"]
    # the plan as the approver would read it, next to the report: names and counts only
    pages = list((closure.tmp / "output").rglob("plan.html"))
    assert [p.parent for p in pages] == [reports[0].parent]
    page = pages[0].read_text(encoding="utf-8")
    assert "<code>students</code>" in page and "删除 / delete" in page and "演练" in page
    from devtools.demo.seed import planted_values

    planted = planted_values(f"sqlite:///{closure.source}")
    assert not [v for values in planted.values() for v in values if v in page]


def test_the_person_who_triggered_cannot_approve(closure):
    manifest_path = closure.companies / "demo-academy.yaml"
    manifest = yaml.safe_load(manifest_path.read_text())
    manifest["approval"]["approvers"] = ["dag_test"]  # dag.test() triggers as "dag_test"
    manifest_path.write_text(yaml.safe_dump(manifest, allow_unicode=True))
    before = _counts(closure.engine)

    sandbox = closure.sandbox()
    proc = sandbox.start_dag_test(DAG_ID, _conf())
    answer = sandbox.answer(DAG_ID, user="dag_test")
    result, log = sandbox.finish(proc)
    assert answer["status"] == 200
    assert result["state"] == "failed"
    assert result["tasks"]["approve"] == "failed" and result["tasks"]["erase"] != "success"
    assert _counts(closure.engine) == before
    refusals = [
        e for e in _ledger(closure.store_url).entries() if e.stage == "approve" and e.event == "refused"
    ]
    assert len(refusals) == 1 and refusals[0].actor == "dag_test"


# Two runs, not four: preflight reports every problem at once, so the store, the keyring and the
# source connection are broken together; the SMTP server alone, since then no alert can go out.
@pytest.mark.parametrize(
    "broken", [("smtp",), ("s3", "keyring", "connection")], ids=["smtp", "s3-keyring-connection"]
)
def test_unreachable_server_or_bad_keyring_fails_preflight_and_touches_nothing(closure, broken):
    port = free_port()
    expected = []
    if "connection" in broken:
        del closure.env["AIRFLOW_CONN_DEMO_ACADEMY_DB"]
        expected.append("sources[0].conn_id: no such connection 'demo_academy_db'")
    if "keyring" in broken:
        closure.keyring_path.write_text('{"version": 1, "keks": "not a key"}')
        expected.append(f"keyring {closure.keyring_path} is malformed")
    if "smtp" in broken:
        closure.env["AIRFLOW_CONN_DEREG_SMTP"] = json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_ssl": True, "disable_tls": True},
            }
        )
        expected.append(f"SMTP server 127.0.0.1:{port}")
    if "s3" in broken:
        closure.env["AIRFLOW_CONN_DEREG_OFFSITE"] = json.dumps(
            {
                "conn_type": "aws",
                "login": "x",
                "password": "y",
                "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "cn-north-1"},
            }
        )
        expected.append(f"S3 store http://127.0.0.1:{port}")
    before = _counts(closure.engine)
    result, log = closure.sandbox().run_dag(DAG_ID, _conf())
    assert result["state"] == "failed"
    assert result["tasks"]["preflight"] == "failed"
    assert result["tasks"]["erase"] != "success"
    assert [e for e in expected if e not in log] == []
    assert "unreachable" in log  # the SMTP server, or the S3 store
    assert _counts(closure.engine) == before
    # no notice went out; the operations address got one alert, unless the SMTP server is the problem
    alerts = closure.smtp.messages()
    if "smtp" in broken:
        assert alerts == []
        assert "Failure alert for preflight could not be sent" in log
    else:
        assert len(alerts) == 1, [m["Subject"] for m in alerts]
        alert = alerts[0]
        assert alert["To"] == "ops@demo-academy.example"
        assert alert["Subject"].startswith("[Dereg] demo_academy: task preflight FAILED (run ")
        body = alert.get_content()
        assert f"DAG:              {DAG_ID}" in body
        assert re.search(rf"Log / 日志: http\S+/dags/{DAG_ID}/runs/\S+/tasks/preflight", body), body
        assert expected[0].split(":")[0] in body
        assert "@" not in body.replace("ops@demo-academy.example", "")
    failures = [
        e for e in _ledger(closure.store_url).entries() if e.stage == "preflight" and e.event == "failed"
    ]
    assert failures and [e for e in expected if e not in failures[-1].details["error"]] == []


def test_broken_manifest_fails_its_own_dag_only(closure):
    (closure.companies / "bad-shop.yaml").write_text(
        "company_id: bad_shop\nsources:\n  - id: shop\n    conn_id: no_such_conn\n"
    )
    sandbox = closure.sandbox()
    result, log = sandbox.run_dag("closure__bad_shop", {})
    assert result["state"] == "failed"
    assert "manifest" in log and "problem(s)" in log
    assert "IMPORT_ERRORS" not in log
    failures = [e for e in _ledger(closure.store_url).entries() if e.company_id == "bad_shop"]
    assert [(e.stage, e.event) for e in failures] == [("preflight", "failed")]
    assert any("conn_id" in p for p in failures[0].details["problems"])


def test_answers_through_the_page_and_csv_stop_the_erase_until_fulfilled(closure, monkeypatch):
    """Answers recorded after fulfil_requests ran (while the approval waits) change what erase does:
    it refuses, says why, and records the refusal; nothing is erased."""
    import time

    from fastapi.testclient import TestClient

    from dereg.cli import main as dereg_cli
    from dereg.web.answers_app import create_app

    for key in ("DEREG_STORE_URL", "DEREG_KEYRING", "DEREG_COMPANIES_DIR"):
        monkeypatch.setenv(key, closure.env[key])
    before = _counts(closure.engine)
    sandbox = closure.sandbox()
    proc = sandbox.start_dag_test(DAG_ID, _conf())
    ledger = _ledger(closure.store_url)
    deadline = time.monotonic() + 300
    while not [e for e in ledger.entries() if e.stage == "fulfil_requests" and e.event == "succeeded"]:
        assert time.monotonic() < deadline and proc.poll() is None, "fulfil_requests never succeeded"
        time.sleep(0.2)
    run_id = next(e.run_id for e in ledger.entries() if e.stage == "fulfil_requests")
    notices = closure.smtp.messages()
    text = notices[0].get_body(preferencelist=("plain",)).get_content()
    token = re.search(r"https?://[^/\s]+/dereg/answer/#(\S+)", text).group(1)
    client = TestClient(create_app())
    assert client.post("/answer/", data={"token": token, "choice": "copy"}).status_code == 200
    csv_path = closure.tmp / "answers.csv"
    csv_path.write_text(f"email,choice\n{notices[1]['To'].addresses[0].addr_spec},2\n", encoding="utf-8")
    assert dereg_cli(["answers", "import", str(csv_path), "--company", "demo_academy", "--run", run_id]) == 0

    answer = sandbox.answer(DAG_ID, user="approver")
    result, log = sandbox.finish(proc)
    assert answer["status"] == 200, answer
    assert result["tasks"]["erase"] == "failed", result
    assert "2 customer request(s) (copy or transfer) are neither fulfilled nor waived" in log
    refused = [e for e in _ledger(closure.store_url).entries() if e.stage == "erase" and e.event == "refused"]
    assert refused and "2 customer request(s)" in refused[-1].details["reason"]
    assert _counts(closure.engine) == before
