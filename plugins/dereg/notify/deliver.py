"""Deliver notices over SMTP, exactly once per recipient and run.

Each notice is recorded as `sending` before it goes out and `sent` once the server accepted it;
a retried task skips everyone already `sent`. The Message-ID is derived from the run and the
recipient, so the rare resend after a crash between the server's acceptance and our record carries
the same id and mail clients show one message. Refusals are recorded per recipient and do not stop
the others; a dropped connection is reopened with backoff.
"""

from __future__ import annotations

import hashlib
import smtplib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy.engine import Engine

from dereg.errors import NotifyError
from dereg.notify import records
from dereg.notify.recipients import RecipientList
from dereg.notify.render import NoticeContext, render_notice
from dereg.redact import redact

RETRIES = 3
BACKOFF_SECONDS = 1.0


@dataclass
class SmtpSettings:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    ssl: bool = False
    timeout: float = 30.0

    def connect(self) -> smtplib.SMTP:
        try:
            smtp = (smtplib.SMTP_SSL if self.ssl else smtplib.SMTP)(
                self.host, self.port, timeout=self.timeout
            )
            if self.starttls:
                smtp.starttls()
            if self.user:
                smtp.login(self.user, self.password or "")
            return smtp
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(
                f"SMTP server {self.host}:{self.port} cannot be used ({type(exc).__name__}: {redact(str(exc))[:200]}). "
                "Check the SMTP connection's host, port, TLS settings and credentials; nothing was recorded as sent."
            ) from None


class RateLimiter:
    """At most `per_minute` sends a minute, evenly spaced: `wait()` before each send sleeps until the
    next slot. Mail relays throttle, defer or blacklist senders that burst."""

    def __init__(self, per_minute: int, *, clock=time.monotonic, sleep=time.sleep) -> None:
        if per_minute < 1:
            raise NotifyError(f"notify.rate_per_minute must be at least 1, not {per_minute}")
        self.interval = 60.0 / per_minute
        self.clock, self.sleep = clock, sleep
        self.next_slot: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.next_slot is not None and now < self.next_slot:
            self.sleep(self.next_slot - now)
            now = self.next_slot
        self.next_slot = now + self.interval


@dataclass
class NoticeReport:
    reachable: int = 0
    unreachable: int = 0
    sent: int = 0
    already_sent: int = 0
    refused: int = 0
    failed: int = 0
    dry_run: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def message_id(company_id: str, run_id: str, ref: str, sender: str) -> str:
    digest = hashlib.sha256(f"{company_id}\0{run_id}\0{ref}".encode()).hexdigest()[:32]
    domain = sender.rsplit("@", 1)[-1].strip("> ") if "@" in sender else "dereg.invalid"
    return f"<dereg.{digest}@{domain}>"


def send_notices(
    recipients: RecipientList,
    *,
    smtp: SmtpSettings,
    ctx: NoticeContext,
    store: Engine,
    pseudonym_key: bytes,
    company_id: str,
    run_id: str,
    dry_run: bool,
    progress: Callable[[str], None] | None = None,
    rate_per_minute: int = 3000,
) -> NoticeReport:
    report = NoticeReport(
        reachable=len(recipients.reachable), unreachable=len(recipients.unreachable), dry_run=dry_run
    )
    if dry_run:
        for r in recipients.reachable:  # prove every message renders; send nothing
            render_notice(ctx, r, message_id=message_id(company_id, run_id, "dry-run", ctx.sender))
        if progress:
            progress(
                f"dry run: {report.reachable} notices rendered, none sent; {report.unreachable} contacts "
                "without an address"
            )
        return report
    done = records.statuses(store, company_id, run_id)
    todo = []
    for r in recipients.reachable:
        ref = records.recipient_ref(pseudonym_key, r.email)
        if done.get(ref) in ("sent", "refused"):
            report.already_sent += done[ref] == "sent"
            report.refused += done[ref] == "refused"
            continue
        todo.append((ref, r))
    if not todo:
        return report
    limiter = RateLimiter(rate_per_minute)
    connection = smtp.connect()
    try:
        for i, (ref, r) in enumerate(todo, 1):
            limiter.wait()
            mid = message_id(company_id, run_id, ref, ctx.sender)
            message = render_notice(ctx, r, message_id=mid)
            records.mark(
                store,
                company_id=company_id,
                run_id=run_id,
                ref=ref,
                status="sending",
                message_id=mid,
                children=len(r.children),
                attempt=True,
            )
            status, error = "failed", None
            for attempt in range(RETRIES):
                try:
                    connection.send_message(message)
                    status = "sent"
                    break
                except smtplib.SMTPRecipientsRefused as exc:
                    codes = sorted({code for code, _ in exc.recipients.values()})
                    status, error = "refused", f"recipient refused by the server (SMTP {codes})"
                    break
                except smtplib.SMTPResponseException as exc:
                    if 500 <= exc.smtp_code < 600:
                        status, error = "refused", f"message refused by the server (SMTP {exc.smtp_code})"
                        break
                    error = f"temporary SMTP error {exc.smtp_code}"
                except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
                    error = f"connection lost ({type(exc).__name__})"
                time.sleep(BACKOFF_SECONDS * (2**attempt))
                try:
                    connection.close()
                except Exception:  # noqa: BLE001 - the connection is being replaced anyway
                    pass
                try:
                    connection = smtp.connect()
                except NotifyError:
                    continue
            records.mark(
                store,
                company_id=company_id,
                run_id=run_id,
                ref=ref,
                status=status,
                message_id=mid,
                children=len(r.children),
                error=error,
            )
            setattr(report, status, getattr(report, status) + 1)
            if progress and (i % 50 == 0 or i == len(todo)):
                progress(
                    f"notices: {i}/{len(todo)} processed ({report.sent} sent, {report.refused} refused, "
                    f"{report.failed} failed)"
                )
    finally:
        try:
            connection.quit()
        except Exception:  # noqa: BLE001
            pass
    if report.failed:
        raise NotifyError(
            f"{report.failed} notice(s) of {company_id} could not be delivered after {RETRIES} attempts "
            f"({report.sent} sent, {report.refused} refused). Run the task again: notices already "
            "sent are not sent twice."
        )
    return report
