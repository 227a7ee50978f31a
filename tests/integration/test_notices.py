"""Customer notices delivered through the SMTP provider's hook to a real aiosmtpd server: one per
address, never twice (after a crash and after a kill), refusals recorded, deferrals and a dropped
session retried with backoff, STARTTLS with certificate verification and login."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import json
import multiprocessing
import os
import ssl
from email import policy
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from dereg.cli import main as dereg_cli
from dereg.errors import NotifyError
from dereg.evidence.store import open_store
from dereg.notify import deliver, records
from dereg.notify.deliver import NoticeSmtpHook, send_notices
from dereg.notify.recipients import collect_recipients
from dereg.notify.render import NoticeContext, render_notice
from devtools.stack.ports import free_port

pytestmark = pytest.mark.integration
KEY = b"k" * 32
CONN = "notice_smtp"


def _use_smtp(monkeypatch, port: int, login: str | None = None, password: str | None = None, **extra):
    conn = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": port,
        "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 5, "retry_limit": 0, **extra},
    }
    if login:
        conn.update(login=login, password=password)
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps(conn))


@pytest.fixture
def smtp(smtp_sink, monkeypatch):
    _use_smtp(monkeypatch, smtp_sink.port)
    return smtp_sink


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
        answer_link=lambda address: f"https://dereg.test/dereg/answer/{address.split('@')[0]}-token",
    )


def _send(recipients, store, run_id="r1", **kw):
    return send_notices(
        recipients,
        smtp_conn_id=CONN,
        ctx=_ctx(),
        store=store,
        pseudonym_key=KEY,
        company_id="c1",
        run_id=run_id,
        dry_run=kw.pop("dry_run", False),
        **kw,
    )


def _to(message) -> str:
    return message["To"].addresses[0].addr_spec.lower()


def test_one_notice_per_address_naming_every_child(school, smtp, store_url):
    recipients = _recipients(school)
    assert len(recipients.reachable) == 9 and len(recipients.unreachable) == 2
    report = _send(recipients, open_store(store_url))
    assert report.sent == 9 and report.unreachable == 2
    messages = smtp.messages()
    assert len(messages) == 9 and len({_to(m) for m in messages}) == 9
    first = next(m for m in messages if _to(m) == "parent1@example.cn")
    text = first.get_body(("plain",)).get_content()
    html = first.get_body(("html",)).get_content()
    assert "孩子1" in text and "孩子13" in text and "孩子1" in html and "孩子13" in html
    assert text.index("您好") < text.index("Dear")  # Chinese first
    assert first["Reply-To"] == "privacy@star.example" and first["Message-ID"].startswith("<dereg.")
    assert first["From"].addresses[0].display_name == "小星星"
    assert "停业注销" in first["Subject"] and first["Content-Language"] == "zh-CN, en"
    assert first.get_content_type() == "multipart/alternative"
    assert "银行卡号" in text and "Bank card number" in text and "Bank card number" in html
    assert "https://dereg.test/dereg/answer/parent1-token" in text and "parent1-token" in html
    assert "parent2-token" not in text  # each notice carries its own link
    # the fast renderer's parts are exactly what the reference (Jinja + email package) produces
    r1 = next(r for r in recipients.reachable if r.email == "parent1@example.cn")
    reference = render_notice(_ctx(), r1, message_id=first["Message-ID"])
    assert text == reference.get_body(("plain",)).get_content()
    assert html == reference.get_body(("html",)).get_content()
    assert first["Subject"] == reference["Subject"]
    one_child = next(m for m in messages if _to(m) == "parent2@example.cn").get_body(("plain",)).get_content()
    assert "孩子2" in one_child and "孩子13" not in one_child and "孩子1）" not in one_child


def test_a_retry_sends_nothing_twice(school, smtp, store_url):
    store = open_store(store_url)
    recipients = _recipients(school)
    _send(recipients, store)
    again = _send(recipients, store)
    assert again.sent == 0 and again.already_sent == 9
    assert len(smtp.messages()) == 9


def test_a_crash_halfway_then_a_retry_gives_exactly_one_each(school, smtp, store_url, monkeypatch):
    monkeypatch.setattr(deliver, "RECORD_SECONDS", 3600)  # batches of exactly record_batch, however slow
    store = open_store(store_url)
    recipients = _recipients(school)
    real_wait, waits = deliver.RateLimiter.wait, []

    def wait_then_die(self):
        waits.append(1)
        if len(waits) == 5:
            raise SystemExit("worker stopped")  # the task dies between its 4th and 5th notice
        real_wait(self)

    monkeypatch.setattr(deliver.RateLimiter, "wait", wait_then_die)
    with pytest.raises(SystemExit):
        _send(recipients, store, record_batch=3)
    monkeypatch.setattr(deliver.RateLimiter, "wait", real_wait)
    assert len(smtp.messages()) == 4
    # outcomes known when the task stopped were written; notices marked but not attempted are pending
    assert records.counts(store, "c1", "r1") == {"sent": 4, "pending": 2}
    report = _send(recipients, store, record_batch=3)
    assert report.sent == 5 and report.already_sent == 4
    messages = smtp.messages()
    assert len(messages) == 9 and len({_to(m) for m in messages}) == 9
    assert records.counts(store, "c1", "r1") == {"sent": 9}


def test_a_killed_worker_never_causes_a_second_notice(school, smtp, store_url, monkeypatch):
    """SIGKILL-like death (no Python runs) right after the relay accepted the 6th notice."""
    monkeypatch.setattr(deliver, "RECORD_SECONDS", 3600)  # batches of exactly record_batch, however slow
    recipients = _recipients(school)

    def worker():
        from dereg.evidence import store as store_module

        store_module._open_store.cache_clear()  # a fresh engine, not the parent's connections
        real_send, sent = NoticeSmtpHook.send_raw, []

        def send_then_killed(self, *args):
            real_send(self, *args)
            sent.append(1)
            if len(sent) == 6:
                os._exit(9)

        NoticeSmtpHook.send_raw = send_then_killed
        _send(recipients, open_store(store_url), record_batch=4)

    process = multiprocessing.get_context("fork").Process(target=worker)
    process.start()
    process.join(60)
    assert process.exitcode == 9 and len(smtp.messages()) == 6
    store = open_store(store_url)
    # batches of 4: the first batch's outcomes were written, the second's (2 sent, 2 not) were not
    assert records.counts(store, "c1", "r1") == {"sent": 4, "sending": 4}
    with pytest.raises(
        NotifyError, match=r"4 notice\(s\) were being sent when an earlier attempt was killed"
    ):
        _send(recipients, store, record_batch=4)
    assert len(smtp.messages()) == 7  # the one never marked was sent; the unconfirmed four were not
    # operations check the relay's log and record the verdict
    monkeypatch.setenv("DEREG_STORE_URL", store_url)
    unconfirmed = records.unconfirmed(store, "c1", "r1")
    relayed = {m["Message-ID"] for m in smtp.messages()}
    delivered = [m for m in unconfirmed if m in relayed]
    missing = [m for m in unconfirmed if m not in relayed]
    assert len(delivered) == 2 and len(missing) == 2
    base = ["notices", "resolve", "--company", "c1", "--run", "r1"]
    assert dereg_cli([*base, "--delivered", "<not.one.of.them@x>"]) == 2
    assert dereg_cli([*base, "--delivered", *delivered]) == 0
    assert dereg_cli([*base, "--not-delivered", *missing]) == 0
    report = _send(recipients, store, record_batch=4)
    assert report.sent == 2 and report.already_sent == 7
    messages = smtp.messages()
    assert len(messages) == 9 and len({_to(m) for m in messages}) == 9


def test_refused_recipients_are_recorded_and_the_rest_sent(school, smtp, store_url):
    smtp.handler.refuse.update({"parent2@example.cn", "parent3@example.cn"})
    store = open_store(store_url)
    report = _send(_recipients(school), store)
    assert report.refused == 2 and report.sent == 7
    assert len(smtp.messages()) == 7
    assert records.counts(store, "c1", "r1") == {"sent": 7, "refused": 2}
    again = _send(_recipients(school), store)  # refusals are final: not retried by a rerun
    assert again.sent == 0 and again.refused == 2 and len(smtp.messages()) == 7


def test_deferrals_and_a_dropped_session_are_retried_with_backoff(school, smtp, store_url):
    smtp.handler.defer["parent4@example.cn"] = 2  # greylisted twice at RCPT (451)
    smtp.handler.close_at_data["parent5@example.cn"] = 1  # 421 after DATA: the client drops the session
    waits: list[float] = []
    report = _send(_recipients(school), open_store(store_url), backoff=0.5, sleep=waits.append)
    assert report.sent == 9 and smtp.handler.temporary_replies == 3
    assert waits == [0.5, 1.0, 0.5]  # exponential per notice
    messages = smtp.messages()
    assert len(messages) == 9 and len({_to(m) for m in messages}) == 9


def test_a_deferral_that_never_clears_fails_the_task_and_a_rerun_sends_it(school, smtp, store_url):
    smtp.handler.defer["parent4@example.cn"] = 10
    store = open_store(store_url)
    with pytest.raises(NotifyError, match=r"1 notice\(s\) could not be delivered after 4 attempts"):
        _send(_recipients(school), store, backoff=0, sleep=lambda s: None)
    assert records.counts(store, "c1", "r1") == {"sent": 8, "failed": 1}
    smtp.handler.defer.clear()
    report = _send(_recipients(school), store)
    assert report.sent == 1 and len(smtp.messages()) == 9


def test_an_unreachable_server_is_a_clear_error_and_nothing_is_recorded(school, store_url, monkeypatch):
    port = free_port()
    _use_smtp(monkeypatch, port)
    store = open_store(store_url)
    with pytest.raises(
        NotifyError, match=rf"SMTP server 127\.0\.0\.1:{port} of connection 'notice_smtp' cannot"
    ):
        _send(_recipients(school), store)
    assert records.counts(store, "c1", "r1") == {}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a certificate it signs for 127.0.0.1, and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = ca("Dereg test CA")
    _, other_cert = ca("Some other CA")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = SimpleNamespace(
        ca=directory / "ca.pem",
        other=directory / "other.pem",
        cert=directory / "cert.pem",
        key=directory / "key.pem",
    )
    paths.ca.write_bytes(ca_cert.public_bytes(pem))
    paths.other.write_bytes(other_cert.public_bytes(pem))
    paths.cert.write_bytes(leaf.public_bytes(pem))
    paths.key.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_starttls_verifies_the_certificate_and_logs_in(school, store_url, tmp_path, pki, monkeypatch):
    from aiosmtpd.smtp import AuthResult

    from devtools.stack.smtp_sink import start_sink

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki.cert, pki.key)
    logins: list[bool] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"dereg" and auth_data.password == b"s3cret-pw"
        logins.append(ok)
        return AuthResult(success=ok, handled=False)

    port = free_port()
    controller = start_sink(
        tmp_path / "tls-mail",
        port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    store = open_store(store_url)
    try:
        _use_smtp(monkeypatch, port, "dereg", "s3cret-pw", disable_tls=False, ssl_ca_file=str(pki.ca))
        report = _send(_recipients(school), store)
        assert report.sent == 9 and logins == [True]  # one session, one login, for all nine
        received = [
            email.message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in (tmp_path / "tls-mail").glob("*.eml")
        ]
        assert len({_to(m) for m in received}) == 9

        _use_smtp(monkeypatch, port, "dereg", "s3cret-pw", disable_tls=False, ssl_ca_file=str(pki.other))
        with pytest.raises(NotifyError, match="certificate could not be verified") as failure:
            _send(_recipients(school), store, run_id="r2")
        assert "s3cret-pw" not in str(failure.value)
        assert records.counts(store, "c1", "r2") == {}

        _use_smtp(monkeypatch, port, "dereg", "wrong", disable_tls=False, ssl_ca_file=str(pki.ca))
        with pytest.raises(NotifyError, match="refused the connection's login"):
            _send(_recipients(school), store, run_id="r3")
        assert records.counts(store, "c1", "r3") == {}
    finally:
        controller.stop()


def test_dry_run_sends_nothing(school, smtp, store_url):
    report = _send(_recipients(school), open_store(store_url), dry_run=True)
    assert report.dry_run and report.sent == 0
    assert smtp.messages() == []


def test_the_store_holds_no_address(school, smtp, store_url):
    store = open_store(store_url)
    _send(_recipients(school), store)
    with store.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM notices")) for v in row)
    assert "example.cn" not in dump and "parent" not in dump.lower()  # only keyed hashes of the addresses


def test_the_rate_limit_paces_real_sends(school, smtp, store_url):
    import time

    started = time.monotonic()
    report = _send(_recipients(school), open_store(store_url), rate_per_minute=240)
    elapsed = time.monotonic() - started
    assert report.sent == 9 and len(smtp.messages()) == 9
    assert elapsed >= 8 * 0.25  # nine sends at 4 a second: at least eight quarter-second gaps
