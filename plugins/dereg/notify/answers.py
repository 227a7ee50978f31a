"""Customers' answers to the closure notice, and the requests they create.

A customer (the guardian, for a child) chooses one option: a **copy** of their data, **transfer**
to the successor organisation named in the manifest, or **deletion** (also what silence means).
Answers arrive through three channels, all stored the same way (`answers` table: time, channel,
choice; the latest answer of a recipient counts):

- `page`: the per-recipient signed link in the notice opens a small page served by the Dereg
  Airflow plugin (no login; the link is the credential and expires with the notice window);
- `reply`: a reply to the notice, matched to its recipient by the notice's Message-ID in
  In-Reply-To/References, its first unquoted lines read for the choice (`dereg answers replies`);
- `csv`: operations import a CSV of `email,choice` rows (`dereg answers import`).

Recipients are only ever named by `recipient_ref` (a keyed hash of the address, as in the notice
records). A copy or transfer request must be fulfilled (`fulfilments`: done) or waived by
operations with a reason before the erase stage will run.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import email
import email.policy
import hashlib
import hmac
import io
import mailbox
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.errors import DeregError
from dereg.evidence.store import metadata
from dereg.notify import records

CHOICES = ("copy", "transfer", "delete")
CHANNELS = ("page", "reply", "csv")
_CHOICE_WORDS = {
    "copy": ("copy", "副本", "复制", "拷贝", "获取副本", "1"),
    "transfer": ("transfer", "转移", "转交", "2"),
    "delete": ("delete", "deletion", "删除", "3"),
}

answers = sa.Table(
    "answers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("company_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("recipient_ref", sa.String(64), nullable=False),
    sa.Column("choice", sa.String(16), nullable=False),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("source", sa.String(200)),  # csv: file name and line; reply: message hash; page: -
    sa.Column("answered_at", sa.String(40), nullable=False),
    sa.Index("ix_answers_run", "company_id", "run_id", "recipient_ref"),
)

fulfilments = sa.Table(
    "fulfilments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("company_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("recipient_ref", sa.String(64), nullable=False),
    sa.Column("choice", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # done | waived
    sa.Column("detail", sa.Text),  # JSON: counts, link expiry, or the waiver's reason
    sa.Column("actor", sa.String(200)),
    sa.Column("at", sa.String(40), nullable=False),
    sa.UniqueConstraint("company_id", "run_id", "recipient_ref", "choice", name="uq_fulfilment"),
)


class AnswerError(DeregError):
    """An answer, link or import that cannot be accepted."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def parse_choice(text: str) -> str | None:
    """The option named by `text` (English, Chinese or the option's number), or None."""
    word = text.strip().strip(".。:：、)）").lower()
    for choice, words in _CHOICE_WORDS.items():
        if word in words:
            return choice
    return None


# ---- signed links -----------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _link_key(pseudonym_key: bytes) -> bytes:
    return hmac.new(pseudonym_key, b"dereg answer link v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(
    pseudonym_key: bytes, purpose: str, company_id: str, run_id: str, ref: str, expires: dt.datetime
) -> str:
    """A URL-safe token naming (purpose, company, run, recipient) until `expires`, signed with a key
    derived from the keyring's pseudonym key. It holds no address or name."""
    payload = "\n".join((purpose, company_id, run_id, ref, str(int(expires.timestamp())))).encode()
    signature = hmac.new(_link_key(pseudonym_key), payload, hashlib.sha256).digest()[:20]
    return f"{_b64(payload)}.{_b64(signature)}"


@dataclass
class LinkClaim:
    purpose: str
    company_id: str
    run_id: str
    ref: str
    expires: dt.datetime


def check_token(
    pseudonym_key: bytes, token: str, purpose: str, *, now: dt.datetime | None = None
) -> LinkClaim:
    """The claim of a valid, unexpired token of `purpose`; AnswerError otherwise (no detail leaks)."""
    try:
        payload_b64, signature_b64 = token.split(".", 1)
        payload = _unb64(payload_b64)
        expected = hmac.new(_link_key(pseudonym_key), payload, hashlib.sha256).digest()[:20]
        if not hmac.compare_digest(expected, _unb64(signature_b64)):
            raise ValueError
        kind, company_id, run_id, ref, expires = payload.decode().split("\n")
    except (ValueError, UnicodeDecodeError):
        raise AnswerError("this link is not valid; use the link from your notice e-mail") from None
    if kind != purpose:
        raise AnswerError("this link is not valid here; use the link from your notice e-mail")
    claim = LinkClaim(kind, company_id, run_id, ref, dt.datetime.fromtimestamp(int(expires), dt.UTC))
    if (now or dt.datetime.now(dt.UTC)) >= claim.expires:
        raise AnswerError(f"this link expired on {claim.expires:%Y-%m-%d}; please contact the company")
    return claim


def public_base_url(manifest) -> str:
    """Where customers reach the Dereg pages: notify.answer_base_url, else DEREG_PUBLIC_URL, else
    the local API server."""
    import os

    return (manifest.answer_base_url or os.environ.get("DEREG_PUBLIC_URL") or "http://localhost:8080").rstrip(
        "/"
    )


def answer_links(manifest, run_id: str, pseudonym_key: bytes, deadline: dt.date) -> Callable[[str], str]:
    """address -> signed answer-page URL of run `run_id`, valid until the end of the response
    deadline (UTC)."""
    base = public_base_url(manifest)
    company_id = manifest.company_id
    expires = dt.datetime.combine(deadline + dt.timedelta(days=1), dt.time(), dt.UTC)

    def link(address: str) -> str:
        ref = records.recipient_ref(pseudonym_key, address)
        return page_link(
            base, "answer", make_token(pseudonym_key, "answer", company_id, run_id, ref, expires)
        )

    return link


def page_link(base: str, page: str, token: str) -> str:
    """The customer's link to `page` ("answer" or "copy"): the token in the fragment, which the
    browser never sends, so no access log or proxy records it (dereg.web.answers_app)."""
    return f"{base}/dereg/{page}/#{token}"


# ---- answers ----------------------------------------------------------------------------------


def record_answer(
    store: Engine, *, company_id: str, run_id: str, ref: str, choice: str, channel: str, source: str = ""
) -> None:
    if choice not in CHOICES:
        raise AnswerError(f"unknown choice {choice!r}; use one of {', '.join(CHOICES)}")
    if channel not in CHANNELS:
        raise AnswerError(f"unknown channel {channel!r}")
    with store.begin() as conn:
        conn.execute(
            answers.insert().values(
                company_id=company_id,
                run_id=run_id,
                recipient_ref=ref,
                choice=choice,
                channel=channel,
                source=source[:200],
                answered_at=_now(),
            )
        )


def current_answers(store: Engine, company_id: str, run_id: str) -> dict[str, dict]:
    """recipient_ref -> its latest answer {choice, channel, answered_at}."""
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(answers)
            .where(answers.c.company_id == company_id, answers.c.run_id == run_id)
            .order_by(answers.c.answered_at, answers.c.id)
        )
        return {
            r.recipient_ref: {"choice": r.choice, "channel": r.channel, "answered_at": r.answered_at}
            for r in rows
        }


def answer_counts(store: Engine, company_id: str, run_id: str) -> dict[str, int]:
    counts = dict.fromkeys(CHOICES, 0) | dict.fromkeys((f"by_{c}" for c in CHANNELS), 0)
    for answer in current_answers(store, company_id, run_id).values():
        counts[answer["choice"]] += 1
        counts[f"by_{answer['channel']}"] += 1
    return counts


def fulfilment_status(store: Engine, company_id: str, run_id: str) -> dict[tuple[str, str], str]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(fulfilments.c.recipient_ref, fulfilments.c.choice, fulfilments.c.status).where(
                fulfilments.c.company_id == company_id, fulfilments.c.run_id == run_id
            )
        )
        return {(r.recipient_ref, r.choice): r.status for r in rows}


def open_requests(store: Engine, company_id: str, run_id: str) -> dict[str, str]:
    """recipient_ref -> choice, for every copy or transfer request neither fulfilled nor waived."""
    done = fulfilment_status(store, company_id, run_id)
    return {
        ref: a["choice"]
        for ref, a in current_answers(store, company_id, run_id).items()
        if a["choice"] in ("copy", "transfer") and (ref, a["choice"]) not in done
    }


def mark_fulfilled(
    store: Engine,
    *,
    company_id: str,
    run_id: str,
    ref: str,
    choice: str,
    status: str,
    detail: str,
    actor: str,
) -> None:
    """Record a request as `done` or `waived` (idempotent: a second record of the same request is a no-op)."""
    with store.begin() as conn:
        exists = conn.execute(
            sa.select(fulfilments.c.id).where(
                fulfilments.c.company_id == company_id,
                fulfilments.c.run_id == run_id,
                fulfilments.c.recipient_ref == ref,
                fulfilments.c.choice == choice,
            )
        ).first()
        if exists is None:
            conn.execute(
                fulfilments.insert().values(
                    company_id=company_id,
                    run_id=run_id,
                    recipient_ref=ref,
                    choice=choice,
                    status=status,
                    detail=detail,
                    actor=actor,
                    at=_now(),
                )
            )


# ---- imports ----------------------------------------------------------------------------------


@dataclass
class ImportResult:
    recorded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHOICES, 0))
    problems: list[str] = field(default_factory=list)  # line numbers and reasons, never addresses
    skipped: int = 0

    @property
    def total(self) -> int:
        return sum(self.recorded.values())


def import_csv(
    store: Engine, text: str, *, company_id: str, run_id: str, pseudonym_key: bytes, name: str = "answers.csv"
) -> ImportResult:
    """Import `email,choice` rows. The whole file is checked first: with any bad row nothing is
    recorded, and every problem is listed by line number."""
    result = ImportResult()
    notified = records.statuses(store, company_id, run_id)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "email" not in header or "choice" not in header:
        raise AnswerError(
            f"{name}: the first line must name the columns email and choice (found: {', '.join(header) or 'none'})"
        )
    reader.fieldnames = header
    rows = []
    for line, row in enumerate(reader, start=2):
        address, raw = (row.get("email") or "").strip(), (row.get("choice") or "").strip()
        if not address and not raw:
            continue
        choice = parse_choice(raw)
        ref = records.recipient_ref(pseudonym_key, address) if address else ""
        if not address:
            result.problems.append(f"line {line}: no e-mail address")
        elif choice is None:
            result.problems.append(
                f"line {line}: choice {raw[:20]!r} is not one of copy, transfer, delete (1/2/3)"
            )
        elif ref not in notified:
            result.problems.append(f"line {line}: the address was not sent a notice in run {run_id}")
        else:
            rows.append((line, ref, choice))
    if result.problems:
        return result
    for line, ref, choice in rows:
        record_answer(
            store,
            company_id=company_id,
            run_id=run_id,
            ref=ref,
            choice=choice,
            channel="csv",
            source=f"{name}:{line}",
        )
        result.recorded[choice] += 1
    return result


_QUOTED = re.compile(r"^\s*(>|On .* wrote:|在.*写道[:：]|-----Original Message-----|发件人[:：])")


def choice_from_reply(body: str) -> str | None:
    """The choice in the customer's own text: the first unquoted, non-empty lines, read for a word
    or number naming one option; None when absent or ambiguous."""
    found = set()
    for line in body.splitlines():
        if _QUOTED.match(line):
            break
        for token in re.split(r"[\s,，;；/]+", line):
            choice = parse_choice(token)
            if choice:
                found.add(choice)
    return found.pop() if len(found) == 1 else None


def _messages(paths: Iterable[Path]) -> Iterable[tuple[str, email.message.EmailMessage]]:
    for path in paths:
        if path.is_dir():
            yield from _messages(sorted(path.glob("*.eml")))
        elif path.suffix == ".eml":
            yield path.name, email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        else:
            for i, message in enumerate(mailbox.mbox(str(path)), start=1):
                yield (
                    f"{path.name}#{i}",
                    email.message_from_bytes(message.as_bytes(), policy=email.policy.default),
                )


def import_replies(store: Engine, paths: Iterable[Path], *, company_id: str, run_id: str) -> ImportResult:
    """Record the choices in replies to this run's notices (.eml files, folders of them, or mbox)."""
    from dereg.notify.records import notices

    with store.connect() as conn:
        by_message = {
            r.message_id: r.recipient_ref
            for r in conn.execute(
                sa.select(notices.c.message_id, notices.c.recipient_ref).where(
                    notices.c.company_id == company_id, notices.c.run_id == run_id
                )
            )
        }
    result = ImportResult()
    for name, message in _messages(paths):
        refs = " ".join(str(message.get(h, "")) for h in ("In-Reply-To", "References"))
        ref = next((by_message[m] for m in re.findall(r"<[^>]+>", refs) if m in by_message), None)
        if ref is None:
            result.skipped += 1  # not a reply to this run's notices
            continue
        part = message.get_body(preferencelist=("plain",))
        choice = choice_from_reply(part.get_content() if part is not None else "")
        if choice is None:
            digest = hashlib.sha256(name.encode()).hexdigest()[:8]
            result.problems.append(
                f"message {digest}: no single choice found; read it and import the answer by CSV"
            )
            continue
        record_answer(
            store,
            company_id=company_id,
            run_id=run_id,
            ref=ref,
            choice=choice,
            channel="reply",
            source=hashlib.sha256(str(message.get("Message-ID", name)).encode()).hexdigest()[:32],
        )
        result.recorded[choice] += 1
    return result
