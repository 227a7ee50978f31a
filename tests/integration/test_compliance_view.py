"""The Compliance view, served by the real Airflow API server app (uvicorn, the Dereg plugin loaded,
the simple auth manager) over HTTP, reading a real compliance store: a closure's ledger entries,
notice records, answers, backup catalog, a recovery drill and a certificate signed with the real
keyring. Tampering with a ledger row or the stored certificate must turn the verdict to INVALID."""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
import subprocess
import sys
import textwrap

import pytest
import requests
import sqlalchemy as sa

from dereg.backup import catalog
from dereg.certify import CITED_STAGES, build_certificate_body
from dereg.evidence.artifacts import artifacts, put_artifact
from dereg.evidence.certificate import sign_certificate, verify_certificate
from dereg.evidence.ledger import Ledger, ledger
from dereg.evidence.store import open_store
from dereg.keys import Keyring
from dereg.manifest import load_manifest
from dereg.notify import answers, records
from dereg.operators.base import RunContext
from devtools.stack.ports import free_port, wait_for_port
from tests.dags.harness import ROOT, migrate_metadata_db

pytestmark = pytest.mark.integration
RUN = "manual__2026-11-20T09:00:00+00:00"
ADDRESSES = ["parent.one@example.cn", "parent.two@example.cn", "parent.three@example.cn", "bounce@example.cn"]
USERS = {"ops": ("user", "ops-pw"), "auditor": ("viewer", "auditor-pw")}

_SERVE = textwrap.dedent("""
    import sys, uvicorn
    from airflow.api_fastapi.app import create_app
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
""")


def _closure_evidence(store, keyring: Keyring) -> dict:
    """The evidence one finished closure of the demo company leaves, written by the real functions."""
    manifest = load_manifest(ROOT / "include/companies/demo-academy.yaml")
    lg = Ledger(store)
    run = RunContext(
        manifest=manifest,
        run_id=RUN,
        triggered_by="ops",
        dry_run=False,
        reason="test: compliance view",
        notice_window_days=0,
        store=store,
        ledger=lg,
    )
    refs = [records.recipient_ref(keyring.pseudonym_key, a) for a in ADDRESSES]
    for ref in refs[:3]:
        records.mark(
            store, company_id=run.company_id, run_id=RUN, ref=ref, status="sent", message_id="m", children=1
        )
    records.mark(
        store, company_id=run.company_id, run_id=RUN, ref=refs[3], status="failed", message_id="m", children=1
    )
    answers.record_answer(
        store, company_id=run.company_id, run_id=RUN, ref=refs[0], choice="copy", channel="page"
    )
    answers.record_answer(
        store, company_id=run.company_id, run_id=RUN, ref=refs[1], choice="delete", channel="csv"
    )
    answers.record_answer(
        store, company_id=run.company_id, run_id=RUN, ref=refs[1], choice="copy", channel="page"
    )
    retain = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3 * 365)).replace(microsecond=0).isoformat()
    backup_id = "bk-demo-0001"
    catalog.start(
        store,
        backup_id=backup_id,
        company_id=run.company_id,
        run_id=RUN,
        source_id="school_db",
        bucket="dereg-backups",
        prefix="demo_academy/",
        manifest_key="demo_academy/bk-demo-0001/manifest.json",
        object_lock=True,
        kek_id=keyring.active_kek_id(),
        wrapped_key="d3JhcHBlZA==",
    )
    catalog.complete(store, backup_id, tables={"students": {"rows": 40}}, total_rows=40, retain_until=retain)
    details = {
        "backup": {
            "backups": {"school_db": {"backup_id": backup_id, "retain_until": retain, "object_lock": True}}
        },
        "restore_verify": {
            "restores": {"school_db": {"backup_id": backup_id, "tables": 4, "rows": 40, "ok": True}}
        },
        "notify_customers": {"sources": {"school_db": {"sent": 3, "failed": 1}}},
        "approve": {"plan_hash": "ab" * 32},
    }
    for stage in CITED_STAGES:
        run.record(stage, "started")
        run.record(
            stage, "succeeded", actor="approver" if stage == "approve" else None, **details.get(stage, {})
        )
    lg.append(
        company_id=run.company_id,
        run_id="scheduled__2026-11-21T03:00:00+00:00",
        stage="recovery_drill",
        event="succeeded",
        actor="recovery_drill",
        details={
            "backup_id": backup_id,
            "company_id": run.company_id,
            "ok": True,
            "seconds": 1.2,
            "rows": 40,
        },
    )
    run.record("certificate", "started")
    cert = sign_certificate(build_certificate_body(run, source_urls={}), keyring)
    put_artifact(store, run.company_id, RUN, "certificate", cert)
    run.record("certificate", "succeeded")
    return {"company_id": run.company_id, "backup_id": backup_id, "retain": retain, "cert": cert}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    (home / "passwords.json").write_text(json.dumps({u: pw for u, (_, pw) in USERS.items()}))
    store_url = f"sqlite:///{home / 'compliance.db'}"
    keyring = Keyring.create(home / "keyring.json")
    companies = home / "companies"
    companies.mkdir()
    demo = (ROOT / "include/companies/demo-academy.yaml").read_text(encoding="utf-8")
    (companies / "demo-academy.yaml").write_text(demo, encoding="utf-8")
    quiet = demo.replace("company_id: demo_academy", "company_id: quiet_shop").replace(
        "Little Star Children's Academy (demo)", "Quiet Shop (test)"
    )
    (companies / "quiet-shop.yaml").write_text(quiet, encoding="utf-8")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "no-dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{role}" for u, (role, _) in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "compliance-view-test-" + "y" * 48,
        "DEREG_STORE_URL": store_url,
        "DEREG_KEYRING": str(home / "keyring.json"),
        "DEREG_COMPANIES_DIR": str(companies),
        "NO_PROXY": "*",
        "PYTHONUNBUFFERED": "1",  # the access log is read while the server runs
    }
    migrate_metadata_db(home, env)  # a copy of the session's migrated DB when a DAG test made one
    port = free_port()
    log = open(home / "api-server.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(port)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for_port(port, 120, "Airflow API server", proc=proc)

        class S:
            pass

        s = S()
        s.base, s.store, s.keyring, s.log = f"http://127.0.0.1:{port}", open_store(store_url), keyring, log
        s.companies = companies
        yield s
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _token(server, user: str) -> str:
    r = requests.post(
        f"{server.base}/auth/token", json={"username": user, "password": USERS[user][1]}, timeout=30
    )
    assert r.status_code == 201, r.text
    return r.json()["access_token"]


def _page(server, user: str = "auditor", cookie: bool = True) -> requests.Response:
    token = _token(server, user)
    kwargs = {"cookies": {"_token": token}} if cookie else {"headers": {"Authorization": f"Bearer {token}"}}
    return requests.get(f"{server.base}/dereg/compliance/", timeout=60, **kwargs)


def _section(page: str, company_id: str) -> str:
    start = page.index(f"id='company-{company_id}'")
    end = page.find("</section>", start)
    return page[start:end]


def test_the_view_needs_an_airflow_user(server):
    anonymous = requests.get(f"{server.base}/dereg/compliance/", timeout=30)
    assert anonymous.status_code == 401
    assert "Sign in to Airflow" in anonymous.text and "/auth/login" in anonymous.text
    forged = requests.get(f"{server.base}/dereg/compliance/", cookies={"_token": "not.a.jwt"}, timeout=30)
    assert forged.status_code == 403
    download = requests.get(f"{server.base}/dereg/compliance/certificates/1.json", timeout=30)
    assert download.status_code == 401
    # the auditor (viewer role) and ops (user role) may both look, by the UI's cookie or a bearer token
    assert _page(server, "auditor").status_code == 200
    assert _page(server, "ops", cookie=False).status_code == 200
    # the customers' pages under /dereg still answer (the longer prefix is mounted first)
    assert requests.get(f"{server.base}/dereg/answer/bad.token", timeout=30).status_code == 403


def test_an_unknown_or_impossible_certificate_id_is_not_found(server):
    cookies = {"_token": _token(server, "auditor")}
    for artifact_id in ("99999999999999999999999", "2147483648", "0", "-1", "424242"):
        r = requests.get(
            f"{server.base}/dereg/compliance/certificates/{artifact_id}.json", cookies=cookies, timeout=30
        )
        assert r.status_code == 404, (artifact_id, r.status_code, r.text[:300])
        assert f"No certificate with id {artifact_id}" in r.text and len(r.text) < 2000


def test_a_customers_link_keeps_its_token_out_of_the_access_log(server):
    """Airflow 3.3's API server logs every request it serves (its `http.access` logger, at info
    level: method, path and query, with only secret-looking query parameters masked). The token of
    a customer's link must not be in it: the browser sends the path, never the fragment."""
    import time
    from pathlib import Path

    manifest = load_manifest(server.companies / "demo-academy.yaml")
    deadline = dt.date.today() + dt.timedelta(days=3)
    link = answers.answer_links(manifest, "manual__log-test", server.keyring.pseudonym_key, deadline)(
        "parent.log@example.cn"
    )
    url = server.base + "/dereg/" + link.split("/dereg/", 1)[1]
    sent, _, fragment = url.partition("#")  # what a browser requests
    token = fragment or sent.rstrip("/").rsplit("/", 1)[1]
    page = requests.get(sent, timeout=30)
    assert page.status_code == 200
    if fragment:  # what the page's script does with the fragment
        page = requests.post(sent, data={"token": fragment}, timeout=30)
    assert page.status_code == 200 and html.escape(manifest.name_zh) in page.text
    chosen = requests.post(sent, data={"token": token, "choice": "delete"}, timeout=30)
    assert chosen.status_code == 200 and "已记录" in chosen.text
    log = ""
    for _ in range(50):  # the log line is written as the response ends
        log = Path(server.log.name).read_text(encoding="utf-8", errors="replace")
        if log.count("/dereg/answer/") >= 3:
            break
        time.sleep(0.2)
    assert log.count("/dereg/answer/") >= 3, "the API server logged no request line: " + log[-1500:]
    assert token not in log and token.split(".")[1] not in log


def test_the_plugin_adds_compliance_to_the_ui_navigation(server):
    token = _token(server, "ops")
    r = requests.get(
        f"{server.base}/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    (dereg,) = [p for p in r.json()["plugins"] if p["name"] == "dereg"]
    (view,) = dereg["external_views"]
    assert view["name"] == "Compliance" and view["url_route"] == "compliance"
    assert view["href"] == "dereg/compliance/" and view["destination"] == "nav"


def test_figures_and_verification_then_tampering(server):
    evidence = _closure_evidence(server.store, server.keyring)
    company = evidence["company_id"]
    r = _page(server)
    assert r.status_code == 200, r.text[-2000:]
    page = r.text
    section = _section(page, company)
    assert "Little Star Children" in section
    assert f"<code>{RUN}</code>" in section
    assert "certificate: <b>succeeded</b>" in section
    assert "<td class='notices-sent'>3</td>" in section
    assert "<td class='notices-failed'>1</td>" in section
    assert "<td class='notices-answered'>2</td>" in section  # two customers answered (one twice)
    assert evidence["backup_id"] in section
    assert f"<td class='retain when'>{evidence['retain'][:19].replace('T', ' ')}</td>" in section
    # the retention left, in whole days, beside it; labels carry Chinese beside English
    left = (dt.datetime.fromisoformat(evidence["retain"]) - dt.datetime.now(dt.UTC)).days
    assert f"<td class='left'>{left:,} 天 days</td>" in section and "保留至 Retain until" in section
    assert "<td class='drill ok'>passed (" in section
    assert "<td class='verdict ok'>VALID</td>" in section
    assert "Ledger hash chain: intact" in page
    assert "this deployment's signing key" in html.unescape(page)
    for address in ADDRESSES:  # counts and references only
        assert address not in page and address.split("@")[0] not in page

    # the download link serves the signed certificate, which verifies on its own
    readable, link = [part.split("'")[0] for part in section.split("href='")[1:]]
    assert readable.endswith(".pdf") and link.endswith(".json")
    # the readable certificate: a PDF (Chinese first) rendered from the signed JSON, citing its hash
    pdf = requests.get(server.base + readable, cookies={"_token": _token(server, "auditor")}, timeout=60)
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-", pdf.headers
    download = requests.get(server.base + link, cookies={"_token": _token(server, "auditor")}, timeout=30)
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    downloaded = download.json()
    assert downloaded == json.loads(json.dumps(evidence["cert"]))
    assert verify_certificate(downloaded, public_key=server.keyring.public_key(), store=server.store).ok
    import io

    import pypdf

    text = "".join(pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().split())
    assert "个人信息删除证明" in text and hashlib.sha256(download.content).hexdigest() in text

    # a ledger row altered after the fact: the chain and the certificate citing it are INVALID
    with server.store.begin() as conn:
        row = conn.execute(
            sa.select(ledger.c.seq, ledger.c.details).where(
                ledger.c.company_id == company, ledger.c.stage == "erase", ledger.c.event == "succeeded"
            )
        ).one()
        conn.execute(ledger.update().where(ledger.c.seq == row.seq).values(details='{"rows":{}}'))
    page = _page(server).text
    section = _section(page, company)
    assert "<td class='verdict bad'>INVALID</td>" in section
    assert "VALID</td>" not in section.replace("INVALID</td>", "")
    assert "Ledger hash chain: BROKEN" in page
    assert "altered" in section
    with server.store.begin() as conn:
        conn.execute(ledger.update().where(ledger.c.seq == row.seq).values(details=row.details))
    assert "<td class='verdict ok'>VALID</td>" in _page(server).text

    # a certificate edited in the store after signing: INVALID, the signature says so
    with server.store.begin() as conn:
        body = json.loads(
            conn.execute(sa.select(artifacts.c.body).where(artifacts.c.name == "certificate")).scalar()
        )
        body["body"]["approver"] = "someone-else"
        conn.execute(
            artifacts.update().where(artifacts.c.name == "certificate").values(body=json.dumps(body))
        )
    section = _section(_page(server).text, company)
    assert "<td class='verdict bad'>INVALID</td>" in section
    assert "the certificate was altered after signing" in section


def test_a_failed_drill_a_dry_run_and_a_company_not_yet_closed(server):
    store, lg = server.store, Ledger(server.store)
    retain = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).replace(microsecond=0).isoformat()
    catalog.start(
        store,
        backup_id="bk-other-0001",
        company_id="other_co",
        run_id="manual__other",
        source_id="crm",
        bucket="dereg-backups",
        prefix="other_co/",
        manifest_key="other_co/bk-other-0001/manifest.json",
        object_lock=False,
        kek_id=server.keyring.active_kek_id(),
        wrapped_key="d3JhcHBlZA==",
    )
    catalog.complete(store, "bk-other-0001", tables={}, total_rows=0, retain_until=retain)
    lg.append(company_id="other_co", run_id="manual__other", stage="approve", event="requested", actor="ops")
    for event in ("succeeded", "failed"):  # the latest drill counts
        lg.append(
            company_id="other_co",
            run_id=f"scheduled__drill_{event}",
            stage="recovery_drill",
            event=event,
            actor="recovery_drill",
            details={"backup_id": "bk-other-0001", "ok": event == "succeeded"},
        )
    body = {"title": "Dry-run report", "dry_run": True, "company": {"id": "other_co"}, "finished_at": retain}
    put_artifact(store, "other_co", "manual__dry", "certificate", sign_certificate(body, server.keyring))
    # lifecycle entries (key rotation, the retention sweep) are not the latest closure stage
    # a rotation whose re-wrap did not reach this company's backup (interrupted): said in red
    lg.append(
        company_id="_deployment",
        run_id="rot",
        stage="key_rotation",
        event="rotated",
        actor="key_rotation",
        details={"new_kek": "kek-newer", "retired_kek": server.keyring.active_kek_id()},
    )
    lg.append(
        company_id="other_co", run_id="rot", stage="key_rotation", event="rewrapped", actor="key_rotation"
    )
    lg.append(
        company_id="other_co",
        run_id="sweep",
        stage="retention_sweep",
        event="skipped",
        actor="retention_sweep",
    )
    # the retention sweep's final certificate is listed beside the others
    final = {
        "title": "Final",
        "kind": "final",
        "dry_run": False,
        "company": {"id": "other_co"},
        "finished_at": retain,
    }
    put_artifact(
        store, "other_co", "scheduled__sweep", "final_certificate", sign_certificate(final, server.keyring)
    )
    # one customer shredded inside the locked backups (twice for the same ref: one customer), with
    # its own certificate, listed with its readable PDF (its own title) and a JSON download
    for _ in range(2):
        lg.append(
            company_id="other_co",
            run_id="shred-subject-1",
            stage="shred_subject",
            event="succeeded",
            actor="dereg shred-subject",
            details={"subject_ref": "42", "backups": [{"backup_id": "bk-other-0001"}]},
        )
    shred = {"title": "One subject", "kind": "subject_shred", "dry_run": False, "company": {"id": "other_co"}}
    put_artifact(
        store, "other_co", "shred-subject-1", "shred_subject", sign_certificate(shred, server.keyring)
    )
    page = _page(server).text
    other = _section(page, "other_co")
    assert "inside the locked backups: 1 (last 20" in other
    row = other[other.index("单个客户删除证明") :].split("</tr>")[0]
    assert "shred-subject-1" in other and ".json' download" in row and ".pdf'>证明 PDF" in row
    link = next(h.split("'")[0] for h in row.split("href='")[1:] if h.split("'")[0].endswith(".json"))
    cookies = {"_token": _token(server, "auditor")}
    assert (
        requests.get(server.base + link, cookies=cookies, timeout=30).json()["body"]["kind"]
        == "subject_shred"
    )
    readable = requests.get(server.base + link[:-5] + ".pdf", cookies=cookies, timeout=30)
    assert readable.status_code == 200
    if readable.headers["content-type"] == "application/pdf":
        import io

        import pypdf

        first = pypdf.PdfReader(io.BytesIO(readable.content)).pages[0].extract_text()
        assert first.startswith("单个个人信息主体的备份删除证明") and "dry run" not in first
    assert "approve: <b>requested</b>" in other  # waiting for the approval (a shred is not a closure stage)
    assert "<td class='notices-sent'>0</td>" in other
    assert "<td class='drill bad'>failed (" in other
    assert "<td>no</td>" in other  # no Object Lock, and never restored by a closure
    assert "dry-run report" in other and "<td class='verdict ok'>VALID</td>" in other
    assert "<td>最终证明 final certificate</td>" in other and "scheduled__sweep" in other
    assert "Backup keys re-wrapped under a new key" in other
    assert "Key rotation unfinished: 1 backup key(s)" in other and "--rewrap-only" in other
    assert "id='company-_deployment'" not in page and "Key rotation: last 20" in page
    # a company with a manifest and nothing else yet
    quiet = _section(page, "quiet_shop")
    assert "Quiet Shop" in quiet and "No closure has run." in quiet
    assert "No backup." in quiet and "No certificate yet." in quiet
