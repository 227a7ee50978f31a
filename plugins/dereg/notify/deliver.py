"""Deliver notices over the Airflow SMTP connection, exactly once per recipient and run.

Delivery goes through the SMTP provider's hook (`NoticeSmtpHook`, a subclass of `SmtpHook`): one
session for the whole run, SSL or STARTTLS as the connection says (`disable_ssl`, `disable_tls`),
the server's certificate verified (against `ssl_ca_file` from the connection's extra when given),
login when the connection has a login and password. A dropped connection is reopened.

Each notice is recorded in the compliance store as `sending` before it goes out and as `sent`,
`refused` or `failed` after. The marks are written in batches, one transaction each (a commit
costs milliseconds; a notice to a near relay about one): before the next batch goes out, one
transaction writes the outcomes known so far and marks the batch `sending`. A batch is about
`RECORD_SECONDS` (1 s) of sending at the rate measured on the previous batch, at most
`record_batch` (500) notices. Outcomes are also written when `RECORD_INTERVAL` seconds have
passed, and in a `finally` whenever the task stops (an exception, SIGTERM, a timeout), where the
notices marked but never attempted go back to `pending`. A retried task sends every `pending` or
`failed` notice and skips `sent` and `refused` ones. Only a kill that runs no Python (SIGKILL, the
machine failing) can leave notices `sending` whether or not the server accepted them: at most one
batch. Those are
*unconfirmed*: a retry never resends them, sends everyone else, and then fails naming how many;
operations look their Message-IDs up in the relay's log (`dereg notices unconfirmed`) and record
the verdict (`dereg notices resolve --delivered|--not-delivered`), and the next run sends the ones
not delivered. So no one gets a notice twice and no one is silently skipped. The Message-ID is
derived from the run and the recipient, so it is the same on every attempt.

A 4xx reply (the recipient or the message deferred) and a dropped connection are retried with
exponential backoff; a 5xx refusal of the recipient or the message is recorded for that recipient
and the rest are sent; a 5xx refusal of the sender stops the run (nothing else could be sent).
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy.engine import Engine

from dereg.connections import smtp_hook
from dereg.errors import NotifyError
from dereg.notify import records
from dereg.notify.recipients import RecipientList
from dereg.notify.render import NoticeContext, NoticeRenderer
from dereg.notify.smtp import NoticeSmtpHook

_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")
RETRIES = 4  # attempts per notice
BACKOFF_SECONDS = 1.0  # waits 1, 2, 4 s between attempts
RECORD_SECONDS = 1.0  # each batch holds about this long's worth of sends at the rate measured so far
RECORD_BATCH = 500  # ... but never more notices than this (nor fewer than one)
FIRST_BATCH = 20  # before any rate is known
RECORD_INTERVAL = 2.0  # seconds: outcomes are written at least this often (slow relays, backoff)


def deliver_one(
    hook: NoticeSmtpHook,
    sender: str,
    recipient: str,
    data: bytes,
    *,
    retries: int = RETRIES,
    backoff: float = BACKOFF_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str | None]:
    """Send one message with retries; returns (status, error): sent, refused or failed."""
    error = None
    for attempt in range(retries):
        reconnect = False
        try:
            hook.send_raw(sender, recipient, data)
            return "sent", None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            if not all(400 <= c < 500 for c in codes):
                return "refused", f"recipient refused by the server (SMTP {codes})"
            error = f"recipient deferred by the server (SMTP {codes})"
        except smtplib.SMTPSenderRefused as exc:
            if 500 <= exc.smtp_code < 600:
                raise NotifyError(
                    f"{hook.where()} refuses the sender address (SMTP {exc.smtp_code}); check the manifest's "
                    "sender and that the relay lets the connection's login send as it"
                ) from None
            error = f"sender deferred by the server (SMTP {exc.smtp_code})"
            reconnect = exc.smtp_code == 421
        except smtplib.SMTPServerDisconnected as exc:
            error, reconnect = f"connection lost ({type(exc).__name__})", True
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:
                return "refused", f"message refused by the server (SMTP {exc.smtp_code})"
            error = f"temporary SMTP error {exc.smtp_code}"
            reconnect = exc.smtp_code == 421
        except NotifyError as exc:  # reopening inside send_raw failed
            error = str(exc).split(" (", 1)[0]
            reconnect = True
        except OSError as exc:  # timeouts, resets, TLS errors on a live session
            error, reconnect = f"connection lost ({type(exc).__name__})", True
        if attempt == retries - 1:
            break
        sleep(backoff * (2**attempt))
        if reconnect or not hook.alive():
            try:
                hook.reopen()
            except NotifyError:
                continue
    return "failed", error


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
    unconfirmed: int = 0
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
    smtp_conn_id: str,
    ctx: NoticeContext,
    store: Engine,
    pseudonym_key: bytes,
    company_id: str,
    run_id: str,
    dry_run: bool,
    progress: Callable[[str], None] | None = None,
    rate_per_minute: int = 3000,
    record_batch: int = RECORD_BATCH,
    backoff: float = BACKOFF_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> NoticeReport:
    report = NoticeReport(
        reachable=len(recipients.reachable), unreachable=len(recipients.unreachable), dry_run=dry_run
    )
    renderer = NoticeRenderer(ctx)
    if dry_run:
        for r in recipients.reachable:  # prove every message renders; send nothing
            renderer.render(r, message_id=message_id(company_id, run_id, "dry-run", ctx.sender))
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
        status = done.get(ref)
        if status == "sent":
            report.already_sent += 1
        elif status == "refused":
            report.refused += 1
        elif status == "sending":
            report.unconfirmed += 1  # a killed attempt may have sent it: never resent blindly
        else:
            todo.append((ref, r))
    if todo:
        _deliver(
            todo,
            report,
            renderer,
            smtp_conn_id,
            store,
            company_id,
            run_id,
            progress,
            rate_per_minute,
            max(1, record_batch),
            backoff,
            sleep,
        )
    if report.failed or report.unconfirmed:
        problems = []
        if report.failed:
            problems.append(
                f"{report.failed} notice(s) could not be delivered after {RETRIES} attempts; run the task "
                "again (notices already sent are not sent twice)"
            )
        if report.unconfirmed:
            problems.append(
                f"{report.unconfirmed} notice(s) were being sent when an earlier attempt was killed and may "
                "or may not have reached the relay; they are not resent blindly. Look their Message-IDs up "
                f"in the relay's log (dereg notices unconfirmed --company {company_id} --run <run id>), "
                "record the verdict (dereg notices resolve --delivered|--not-delivered ...) and run the "
                "task again"
            )
        raise NotifyError(
            f"notices of {company_id}: {report.sent} sent in this attempt, {report.already_sent} before, "
            f"{report.refused} refused. " + "; ".join(problems) + "."
        )
    return report


def _deliver(
    todo,
    report,
    renderer,
    smtp_conn_id,
    store,
    company_id,
    run_id,
    progress,
    rate_per_minute,
    record_batch,
    backoff,
    sleep,
) -> None:
    limiter = RateLimiter(rate_per_minute)
    hook = smtp_hook(smtp_conn_id).open()  # before anything is marked: a bad relay marks nothing
    sender = renderer.envelope_sender
    ids = {ref: message_id(company_id, run_id, ref, renderer.ctx.sender) for ref, _ in todo}
    outcomes: list[dict] = []  # known outcomes not yet written
    marked = 0  # todo[:marked] are marked `sending`
    started = 0  # todo[:started] have been attempted (or are being)
    inflight: str | None = None
    last_write = time.monotonic()
    batch_started: float | None = None
    chunk: list = []

    def item(ref, r, status, error=None, attempt=False):
        return {
            "ref": ref,
            "status": status,
            "message_id": ids[ref],
            "children": len(r.children),
            "error": error,
            "attempt": attempt,
        }

    try:
        for i, (ref, r) in enumerate(todo):
            if i == marked:
                now = time.monotonic()
                if batch_started is not None and now > batch_started:
                    # size the batch to about RECORD_SECONDS of sending at the rate just measured
                    size = int(len(chunk) / (now - batch_started) * RECORD_SECONDS)
                else:  # no rate measured yet: the rate limit's second, at most FIRST_BATCH
                    size = min(FIRST_BATCH, int(rate_per_minute / 60 * RECORD_SECONDS))
                size = max(1, min(size, record_batch))
                batch_started = now
                chunk = todo[i : i + size]
                records.mark_many(
                    store,
                    company_id=company_id,
                    run_id=run_id,
                    items=outcomes + [item(c_ref, c_r, "sending", attempt=True) for c_ref, c_r in chunk],
                )
                outcomes, marked, last_write = [], i + len(chunk), time.monotonic()
            elif outcomes and time.monotonic() - last_write >= RECORD_INTERVAL:
                records.mark_many(store, company_id=company_id, run_id=run_id, items=outcomes)
                outcomes, last_write = [], time.monotonic()
            data = renderer.render(r, message_id=ids[ref])
            limiter.wait()
            started, inflight = i + 1, ref
            try:
                status, error = deliver_one(hook, sender, r.email, data, backoff=backoff, sleep=sleep)
            except NotifyError:  # the relay refused the sender: this message was not accepted
                started, inflight = i, None
                raise
            inflight = None
            outcomes.append(item(ref, r, status, error))
            setattr(report, status, getattr(report, status) + 1)
            if progress and ((i + 1) % 500 == 0 or i + 1 == len(todo)):
                progress(
                    f"notices: {i + 1}/{len(todo)} processed ({report.sent} sent, {report.refused} refused, "
                    f"{report.failed} failed)"
                )
    finally:
        # Whatever stops us, write what we know: outcomes, and the notices marked but never
        # attempted back to `pending`. The one in flight (if any) stays `sending`: unconfirmed.
        back = [item(ref, r, "pending") for ref, r in todo[started:marked] if ref != inflight]
        try:
            records.mark_many(store, company_id=company_id, run_id=run_id, items=outcomes + back)
        finally:
            hook.close()
