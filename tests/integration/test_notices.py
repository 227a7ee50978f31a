"""Customer notices delivered to a real aiosmtpd server: one per address, never twice, refusals recorded."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dereg.errors import NotifyError
from dereg.evidence.store import open_store
from dereg.notify import records
from dereg.notify.deliver import SmtpSettings, send_notices
from dereg.notify.recipients import collect_recipients
from dereg.notify.render import NoticeContext
from dereg.stack.ports import free_port

pytestmark = pytest.mark.integration
KEY = b"k" * 32


@pytest.fixture
def school(sqlite_url):
    """12 guardians: one with two children, two sharing an address, two without an address."""
    engine = sa.create_engine(sqlite_url)
    md = sa.MetaData()
    guardians = sa.Table(
        "guardians",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("email", sa.String),
    )
    students = sa.Table(
        "students",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("guardian_id", sa.Integer, sa.ForeignKey("guardians.id")),
    )
    md.create_all(engine)
    rows = [{"id": i, "name": f"家长{i}", "email": f"parent{i}@example.cn"} for i in range(1, 11)]
    rows[9]["email"] = "PARENT9@example.cn"  # the same person registered twice
    rows += [
        {"id": 11, "name": "家长11", "email": None},
        {"id": 12, "name": "家长12", "email": "not-an-address"},
    ]
    kids = [{"id": i, "name": f"孩子{i}", "guardian_id": i} for i in range(1, 13)] + [
        {"id": 13, "name": "孩子13", "guardian_id": 1}
    ]
    with engine.begin() as conn:
        conn.execute(guardians.insert(), rows)
        conn.execute(students.insert(), kids)
    yield engine
    engine.dispose()


def _recipients(engine):
    return collect_recipients(
        engine,
        subject_table="students",
        notify_table="guardians",
        email_column="email",
        name_column="name",
        link_column="guardian_id",
    )


def _ctx() -> NoticeContext:
    return NoticeContext(
        company_name_zh="小星星学校",
        company_name_en="Little Star",
        sender="小星星 <privacy@star.example>",
        reply_to="privacy@star.example",
        categories=[("姓名", "Name"), ("银行卡号", "Bank card number")],
        kept=["accounting_records: 会计档案管理办法, 30 年 / years"],
        erase_date=dt.date(2027, 1, 31),
        response_deadline=dt.date(2027, 1, 31),
        complaint="12377",
    )


def _send(recipients, sink, store, **kw):
    smtp = SmtpSettings("127.0.0.1", sink.port if sink else free_port(), timeout=5)
    return send_notices(
        recipients,
        smtp=smtp,
        ctx=_ctx(),
        store=store,
        pseudonym_key=KEY,
        company_id="c1",
        run_id="r1",
        dry_run=kw.pop("dry_run", False),
        **kw,
    )


def test_one_notice_per_address_naming_every_child(school, smtp_sink, store_url):
    recipients = _recipients(school)
    assert len(recipients.reachable) == 9 and len(recipients.unreachable) == 2
    report = _send(recipients, smtp_sink, open_store(store_url))
    assert report.sent == 9 and report.unreachable == 2
    messages = smtp_sink.messages()
    assert len(messages) == 9
    first = next(m for m in messages if m["To"].addresses[0].addr_spec == "parent1@example.cn")
    text = first.get_body(("plain",)).get_content()
    assert "孩子1" in text and "孩子13" in text
    assert text.index("您好") < text.index("Dear")  # Chinese first
    assert first["Reply-To"] == "privacy@star.example" and first["Message-ID"].startswith("<dereg.")
    assert "停业注销" in first["Subject"]
    assert first.get_body(("html",)) is not None
    assert "银行卡号" in text and "Bank card number" in text


def test_a_retry_sends_nothing_twice(school, smtp_sink, store_url):
    store = open_store(store_url)
    recipients = _recipients(school)
    _send(recipients, smtp_sink, store)
    again = _send(recipients, smtp_sink, store)
    assert again.sent == 0 and again.already_sent == 9
    assert len(smtp_sink.messages()) == 9


def test_a_crash_halfway_then_a_retry_gives_exactly_one_each(school, smtp_sink, store_url, monkeypatch):
    from dereg.notify import deliver

    store = open_store(store_url)
    recipients = _recipients(school)
    real_mark, sent = records.mark, []

    def mark_then_die(*args, **kwargs):
        real_mark(*args, **kwargs)
        if kwargs.get("status") == "sent":
            sent.append(1)
            if len(sent) == 4:
                raise SystemExit("worker killed")  # the task dies right after its 4th notice

    monkeypatch.setattr(deliver.records, "mark", mark_then_die)
    with pytest.raises(SystemExit):
        _send(recipients, smtp_sink, store)
    monkeypatch.setattr(deliver.records, "mark", real_mark)
    assert len(smtp_sink.messages()) == 4
    report = _send(recipients, smtp_sink, store)
    assert report.sent == 5 and report.already_sent == 4
    messages = smtp_sink.messages()
    assert len(messages) == 9
    assert len({m["To"].addresses[0].addr_spec.lower() for m in messages}) == 9


def test_refused_recipients_are_recorded_and_the_rest_sent(school, smtp_sink, store_url):
    smtp_sink.handler.refuse.update({"parent2@example.cn", "parent3@example.cn"})
    store = open_store(store_url)
    report = _send(_recipients(school), smtp_sink, store)
    assert report.refused == 2 and report.sent == 7
    assert len(smtp_sink.messages()) == 7
    assert records.counts(store, "c1", "r1") == {"sent": 7, "refused": 2}


def test_an_unreachable_server_is_a_clear_error_and_nothing_is_sent(school, store_url):
    store = open_store(store_url)
    with pytest.raises(NotifyError, match=r"SMTP server 127\.0\.0\.1:\d+ cannot be used"):
        _send(_recipients(school), None, store)
    assert records.counts(store, "c1", "r1") == {}


def test_dry_run_sends_nothing(school, smtp_sink, store_url):
    report = _send(_recipients(school), smtp_sink, open_store(store_url), dry_run=True)
    assert report.dry_run and report.sent == 0
    assert smtp_sink.messages() == []


def test_the_store_holds_no_address(school, smtp_sink, store_url):
    store = open_store(store_url)
    _send(_recipients(school), smtp_sink, store)
    with store.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM notices")) for v in row)
    assert "example.cn" not in dump and "parent" not in dump.lower()  # only keyed hashes of the addresses


def test_the_rate_limit_paces_real_sends(school, smtp_sink, store_url):
    import time

    started = time.monotonic()
    report = _send(_recipients(school), smtp_sink, open_store(store_url), rate_per_minute=240)
    elapsed = time.monotonic() - started
    assert report.sent == 9 and len(smtp_sink.messages()) == 9
    assert elapsed >= 8 * 0.25  # nine sends at 4 a second: at least eight quarter-second gaps
