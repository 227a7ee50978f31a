"""Customers' answers through the signed page, a CSV import and a reply, then their fulfilment:
a copy served by an expiring link, a transfer into the successor's database. Real SQLite source and
successor, a real aiosmtpd server, the plugin's FastAPI app driven over HTTP by Starlette's client."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import zipfile
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient

from dereg.cli import main as dereg_cli
from dereg.evidence.ledger import Ledger
from dereg.evidence.store import open_store
from dereg.keys import Keyring
from dereg.manifest import load_manifest
from dereg.notify import answers
from dereg.notify.answers import answer_links
from dereg.notify.deliver import send_notices
from dereg.notify.recipients import collect_recipients
from dereg.notify.render import NoticeContext
from dereg.operators.base import RunContext
from dereg.operators.stages import FulfilRequestsOperator
from tests.dags.harness import ROOT

pytestmark = pytest.mark.integration
RUN = "manual__2026-11-23T10:00:00+00:00"
# the token is in the fragment, which browsers never send: the page's script POSTs it
LINK = re.compile(r"http://dereg\.test/dereg/(answer|copy)/#([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


@pytest.fixture
def closure(tmp_path, monkeypatch, smtp_sink):
    from devtools.demo.seed import seed

    source, successor = tmp_path / "school.db", tmp_path / "successor.db"
    seed(f"sqlite:///{source}", students=12)
    companies = tmp_path / "companies"
    companies.mkdir()
    data = yaml.safe_load((ROOT / "include/companies/demo-academy.yaml").read_text())
    data["successor"] = {"name": "明日之星学校", "conn_id": "successor_db"}
    data["notify"]["answer_base_url"] = "http://dereg.test/"
    (companies / "demo-academy.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    keyring = Keyring.create(tmp_path / "keyring.json")
    env = {
        "DEREG_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "DEREG_KEYRING": str(tmp_path / "keyring.json"),
        "DEREG_COMPANIES_DIR": str(companies),
        "DEREG_OUTPUT_DIR": str(tmp_path / "out"),
        "AIRFLOW_CONN_DEMO_ACADEMY_DB": json.dumps({"conn_type": "sqlite", "host": str(source)}),
        "AIRFLOW_CONN_SUCCESSOR_DB": json.dumps({"conn_type": "sqlite", "host": str(successor)}),
        "AIRFLOW_CONN_DEREG_SMTP": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_sink.port,
                "extra": {"disable_ssl": True, "disable_tls": True},
            }
        ),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    store = open_store(env["DEREG_STORE_URL"])
    run = RunContext(
        manifest=load_manifest(companies / "demo-academy.yaml"),
        run_id=RUN,
        triggered_by="ops",
        dry_run=False,
        reason="test: answers",
        notice_window_days=0,
        store=store,
        ledger=Ledger(store),
    )
    engine = sa.create_engine(f"sqlite:///{source}")
    recipients = collect_recipients(
        engine,
        subject_table="students",
        notify_table="guardians",
        email_column="email",
        name_column="name",
        link_column="guardian_id",
    )
    today = dt.date.today()
    ctx = NoticeContext(
        company_name_zh=run.manifest.name_zh,
        company_name_en=run.manifest.name_en,
        sender=run.manifest.sender,
        reply_to=run.manifest.reply_to,
        categories=[("手机号码", "mobile number")],
        kept=[],
        erase_date=today,
        response_deadline=today,
        complaint="12377",
        answer_link=answer_links(run.manifest, run.run_id, keyring.pseudonym_key, today),
    )
    report = send_notices(
        recipients,
        smtp_conn_id="dereg_smtp",
        ctx=ctx,
        store=store,
        pseudonym_key=keyring.pseudonym_key,
        company_id=run.company_id,
        run_id=RUN,
        dry_run=False,
    )
    assert report.sent == len(recipients.reachable) >= 3

    class C:
        pass

    c = C()
    c.run, c.store, c.keyring, c.engine, c.smtp, c.tmp = run, store, keyring, engine, smtp_sink, tmp_path
    c.successor_url = f"sqlite:///{successor}"
    c.notices = smtp_sink.messages()
    c.client = TestClient(__import__("dereg.web.answers_app", fromlist=["create_app"]).create_app())
    yield c
    engine.dispose()
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def _link(message, kind="answer") -> str:
    """The token of the message's link of that kind."""
    text = message.get_body(preferencelist=("plain",)).get_content()
    found = [m for m in LINK.finditer(text) if m.group(1) == kind]
    assert found, "no link of that kind in the message"
    return found[0].group(2)


def _open(client, token: str, kind: str = "answer"):
    """What the browser does with the link: the page, then its script POSTs the fragment's token."""
    opener = client.get(f"/{kind}/")
    assert opener.status_code == 200 and "location.hash" in opener.text and token not in opener.text
    return client.post(f"/{kind}/", data={"token": token})


def _choose(client, token: str, choice: str):
    """The choice form of the page, which carries the token in a hidden field."""
    return client.post("/answer/", data={"token": token, "choice": choice})


def test_page_csv_and_reply_answers_are_recorded_then_fulfilled(closure, capsys):
    c = closure
    first, second, third = c.notices[:3]
    addr = [m["To"].addresses[0].addr_spec for m in (first, second, third)]

    # the page: shown without login, answered once; no personal data on it
    page = _open(c.client, _link(first))
    assert page.status_code == 200 and "小星星" in page.text and 'value="copy"' in page.text
    assert addr[0] not in page.text
    assert f'name="token" value="{_link(first)}"' in page.text
    assert _choose(c.client, _link(first), "copy").status_code == 200
    bad = _link(first)[:-3] + ("AAA" if not _link(first).endswith("AAA") else "BBB")
    assert _open(c.client, bad).status_code == 403
    assert _choose(c.client, bad, "copy").status_code == 403
    assert _choose(c.client, _link(first), "nonsense").status_code == 400

    # the CSV: checked as a whole; a bad line records nothing
    csv_path = c.tmp / "answers.csv"
    csv_path.write_text(f"email,choice\n{addr[1]},转移\nnobody@example.invalid,copy\n", encoding="utf-8")
    args = ["answers", "import", str(csv_path), "--company", "demo_academy", "--run", RUN]
    assert dereg_cli(args) == 1
    assert "line 3: the address was not sent a notice" in capsys.readouterr().err
    csv_path.write_text(f"email,choice\n{addr[1].upper()},转移\n", encoding="utf-8")
    assert dereg_cli(args) == 0

    # the reply: matched by In-Reply-To, the customer's own line read, the quoted notice ignored
    reply = EmailMessage()
    reply["From"], reply["To"] = addr[2], "privacy@demo-academy.example"
    reply["Subject"] = "Re: notice"
    reply["In-Reply-To"] = third["Message-ID"]
    reply.set_content("删除\n\n> 1. 获取副本\n> 2. 转移\n")
    (c.tmp / "replies").mkdir()
    (c.tmp / "replies" / "r1.eml").write_bytes(bytes(reply))
    assert (
        dereg_cli(["answers", "replies", str(c.tmp / "replies"), "--company", "demo_academy", "--run", RUN])
        == 0
    )

    current = answers.current_answers(c.store, "demo_academy", RUN)
    assert sorted((a["choice"], a["channel"]) for a in current.values()) == [
        ("copy", "page"),
        ("delete", "reply"),
        ("transfer", "csv"),
    ]
    assert sorted(answers.open_requests(c.store, "demo_academy", RUN).values()) == ["copy", "transfer"]

    # fulfilment: the copy is e-mailed as a link, the transfer lands in the successor
    result = FulfilRequestsOperator(task_id="fulfil_requests", manifest_path=c.run.manifest.path).act(
        c.run, {}
    )
    assert result["fulfilled"]["copy"] == 1 and result["fulfilled"]["transfer"] == 1
    assert answers.open_requests(c.store, "demo_academy", RUN) == {}
    mails = [
        m for m in c.smtp.messages() if "/dereg/copy/" in m.get_body(preferencelist=("plain",)).get_content()
    ]
    assert [m["To"].addresses[0].addr_spec for m in mails] == [addr[0]]
    download = _open(c.client, _link(mails[0], "copy"), "copy")
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
    bundle = zipfile.ZipFile(io.BytesIO(download.content))
    data = json.loads(bundle.read("data.json"))
    assert [g["email"] for g in data["tables"]["guardians"]] == [addr[0]]
    assert data["tables"]["students"] and {"guardians.csv", "students.csv"} <= set(bundle.namelist())
    with sa.create_engine(c.successor_url).connect() as conn:
        moved = conn.execute(sa.text("SELECT email FROM guardians")).scalars().all()
        children = conn.execute(sa.text("SELECT COUNT(*) FROM students")).scalar_one()
    assert [m.lower() for m in moved] == [addr[1].lower()] and children >= 1
    # a retry does no double work
    again = FulfilRequestsOperator(task_id="fulfil_requests", manifest_path=c.run.manifest.path).act(
        c.run, {}
    )
    assert again["fulfilled"] == {"copy": 0, "transfer": 0, "rows_transferred": 0, "not_found": 0}

    # the ledger holds references and counts, never an address
    ledger = json.dumps([e.details for e in c.run.ledger.entries()], ensure_ascii=False)
    assert "fulfilled" in json.dumps([e.event for e in c.run.ledger.entries()])
    assert not [a for a in addr if a.lower() in ledger.lower()]
    # the copy link expires; an expired copy is purged
    from dereg.notify.fulfil import purge_expired_copies

    assert purge_expired_copies(c.store, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=15)) == 1
    assert _open(c.client, _link(mails[0], "copy"), "copy").status_code == 403


def test_links_put_the_token_in_the_fragment_and_older_links_still_work(closure):
    c = closure
    text = c.notices[0].get_body(preferencelist=("plain",)).get_content()
    token = _link(c.notices[0])
    assert f"http://dereg.test/dereg/answer/#{token}" in text and f"/answer/{token}" not in text
    # a notice sent before carries the token in the path: it is still answered
    page = c.client.get(f"/answer/{token}")
    assert page.status_code == 200 and "小星星" in page.text and 'name="token"' not in page.text
    assert c.client.post(f"/answer/{token}", data={"choice": "transfer"}).status_code == 200
    assert [a["choice"] for a in answers.current_answers(c.store, "demo_academy", RUN).values()] == [
        "transfer"
    ]
    # the opener page holds no token and no data; without a fragment it says to use the e-mail's link
    opener = c.client.get("/answer/")
    assert opener.status_code == 200 and "full link from your e-mail" in opener.text
    assert c.client.post("/answer/", data={}).status_code == 403


def test_waiving_a_request_closes_it_with_a_reason_in_the_ledger(closure, capsys):
    c = closure
    address = c.notices[0]["To"].addresses[0].addr_spec
    assert _choose(c.client, _link(c.notices[0]), "transfer").status_code == 200
    base = ["answers", "waive", "--company", "demo_academy", "--run", RUN, "--email", address, "--by", "ops2"]
    assert dereg_cli([*base, "--reason", "no"]) == 2
    assert dereg_cli([*base, "--reason", "客户电话确认放弃转移"]) == 0
    assert answers.open_requests(c.store, "demo_academy", RUN) == {}
    waived = [e for e in c.run.ledger.entries() if e.event == "waived"]
    assert waived[0].actor == "ops2" and waived[0].details["reason"] == "客户电话确认放弃转移"
    assert address not in capsys.readouterr().out


def _with_manifest(c, **notify) -> RunContext:
    """The closure's run with notify fields of the manifest changed."""
    import dataclasses
    from pathlib import Path

    path = Path(c.run.manifest.path)
    data = yaml.safe_load(path.read_text())
    data["notify"].update(notify)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return dataclasses.replace(c.run, manifest=load_manifest(path))


def test_a_copy_delivered_as_an_attachment_holds_exactly_that_customers_rows(closure, capfd):
    from dereg.notify.fulfil import customer_rows

    c = closure
    run = _with_manifest(c, copy_delivery="attachment")
    first, second = c.notices[:2]
    addr = [m["To"].addresses[0].addr_spec for m in (first, second)]
    assert _choose(c.client, _link(first), "copy").status_code == 200
    result = FulfilRequestsOperator(task_id="fulfil_requests", manifest_path=run.manifest.path).act(run, {})
    assert result["fulfilled"]["copy"] == 1
    mails = [m for m in c.smtp.messages() if "个人信息副本" in m["Subject"]]
    assert [m["To"].addresses[0].addr_spec for m in mails] == [addr[0]]
    attachments = list(mails[0].iter_attachments())
    assert len(attachments) == 1
    part = attachments[0]
    assert part.get_content_type() == "application/zip" and part.get_filename() == "personal-data.zip"
    assert "/dereg/copy/" not in mails[0].get_body(preferencelist=("plain",)).get_content()
    bundle = zipfile.ZipFile(io.BytesIO(part.get_content()))
    data = json.loads(bundle.read("data.json"))
    expected = customer_rows(
        c.engine, subject_table="students", notify=run.manifest.sources[0].notify, address=addr[0]
    )
    assert data["tables"] == expected  # exactly that customer's rows, all of them
    assert [g["email"] for g in data["tables"]["guardians"]] == [addr[0]]
    guardian_id = data["tables"]["guardians"][0]["id"]
    assert data["tables"]["students"] and {s["guardian_id"] for s in data["tables"]["students"]} == {
        guardian_id
    }
    assert addr[1].lower() not in json.dumps(data).lower()
    fulfilled = [e for e in run.ledger.entries() if e.event == "fulfilled"]
    assert fulfilled[-1].details["delivery"] == "attachment"

    # a copy above notify.copy_attachment_max_kb goes as a link instead, logged by count only
    run = _with_manifest(c, copy_delivery="attachment", copy_attachment_max_kb=1)
    assert _choose(c.client, _link(second), "copy").status_code == 200
    capfd.readouterr()
    FulfilRequestsOperator(task_id="fulfil_requests", manifest_path=run.manifest.path).act(run, {})
    logged = "".join(capfd.readouterr())
    mails = [
        m for m in c.smtp.messages() if m["To"].addresses[0].addr_spec == addr[1] and "副本" in m["Subject"]
    ]
    assert len(mails) == 1 and not list(mails[0].iter_attachments())
    download = _open(c.client, _link(mails[0], "copy"), "copy")
    assert download.status_code == 200
    moved = json.loads(zipfile.ZipFile(io.BytesIO(download.content)).read("data.json"))
    assert [g["email"] for g in moved["tables"]["guardians"]] == [addr[1]]
    line = next(x for x in logged.splitlines() if "exceeded notify.copy_attachment_max_kb" in x)
    assert "1 cop(ies) exceeded notify.copy_attachment_max_kb (1 KiB)" in line and "@" not in line
    details = [e.details for e in run.ledger.entries() if e.event == "fulfilled"]
    assert details[-1]["delivery"] == "link (too large to attach)"
