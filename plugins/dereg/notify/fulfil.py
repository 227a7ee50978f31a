"""Fulfilment of customers' requests before erasure: a copy of their data, or a transfer to the
successor organisation named in the manifest.

A customer's data are the rows of the contact (the notice's recipient: a subject's own row, a
profile row and its subject, or a guardian), of the subjects linked to it (their children) and of every table that refers to those rows, directly or through other
collected rows, by single-column foreign keys. A **copy** is a ZIP of `data.json` plus one CSV per
table, encrypted with AES-256-GCM under a fresh data key wrapped by the keyring, and kept in the
compliance store's `copies` table until its link expires; the customer receives an expiring
signed link to the Dereg page that decrypts and serves it. A **transfer** inserts the same rows
into the successor's database (tables created when missing, rows already there left alone, so a
retry does no double work).

`fulfil_requests` is the `fulfil_requests` stage: every open request of a run fulfilled, each
recorded as it is done (so a retry continues where the last try stopped); `copy_message` is the
e-mail that brings a customer their copy, from the `copy*.txt.j2` templates.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import Engine

from dereg.connectors import Connectors
from dereg.errors import DeregError
from dereg.evidence.store import metadata
from dereg.keys import new_data_key
from dereg.notify.answers import answer_counts, make_token, mark_fulfilled, open_requests, public_base_url
from dereg.notify.recipients import recipients_of

copies = sa.Table(
    "copies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("company_id", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("recipient_ref", sa.String(64), nullable=False),
    sa.Column("kek_id", sa.String(80), nullable=False),
    sa.Column("wrapped_key", sa.Text, nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),  # nonce + AES-GCM(zip)
    sa.Column("expires_at", sa.String(40), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.UniqueConstraint("company_id", "run_id", "recipient_ref", name="uq_copy"),
)


class FulfilmentError(DeregError):
    """A request that cannot be fulfilled as asked."""


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    return value


def customer_rows(engine: Engine, *, subject_table: str, notify, address: str) -> dict[str, list[dict]]:
    """Every row of the customer with contact address `address` (see the module docstring)."""
    md = sa.MetaData()
    md.reflect(engine)
    table_name = notify.table_for(subject_table)
    if table_name not in md.tables:  # a view
        sa.Table(table_name, md, autoload_with=engine)
    contacts, subjects = md.tables[table_name], md.tables[subject_table]
    collected: dict[str, list[dict]] = {}
    with engine.connect() as conn:
        email_col = contacts.c[notify.email_column]
        rows = conn.execute(
            sa.select(contacts).where(sa.func.lower(sa.func.trim(email_col)) == address.strip().lower())
        ).mappings()
        collected[contacts.name] = [dict(r) for r in rows]
        if notify.shape == "referred":  # the contact's children: subjects whose link_column holds its key
            key = notify.key_column or list(contacts.primary_key.columns)[0].name
            ids, match = [r[key] for r in collected[contacts.name]], subjects.c[notify.link_column]
        elif notify.shape == "referring":  # the subjects a profile row refers to
            ids = [r[notify.subject_column] for r in collected[contacts.name]]
            match = list(subjects.primary_key.columns)[0]
        else:
            ids = []
        ids = [i for i in ids if i is not None]
        if contacts is not subjects:
            collected[subjects.name] = (
                [dict(r) for r in conn.execute(sa.select(subjects).where(match.in_(ids))).mappings()]
                if ids
                else []
            )
        changed = True
        while changed:
            changed = False
            for table in md.sorted_tables:
                if table.name in collected:
                    continue
                conditions = []
                for fk in table.foreign_keys:
                    parent = fk.column.table.name
                    if parent not in collected or len(fk.constraint.elements) != 1:
                        continue
                    values = {r[fk.column.name] for r in collected[parent]} - {None}
                    if values:
                        conditions.append(fk.parent.in_(sorted(values, key=str)))
                if conditions:
                    found = [
                        dict(r) for r in conn.execute(sa.select(table).where(sa.or_(*conditions))).mappings()
                    ]
                    if found:
                        collected[table.name] = found
                        changed = True
        # the rows they point at in tables not collected (a course, a class): needed for the foreign
        # keys of a transfer, and they tell the customer what their rows refer to
        for name in list(collected):
            for fk in md.tables[name].foreign_keys:
                parent = fk.column.table
                if parent.name in collected or len(fk.constraint.elements) != 1:
                    continue
                values = {r[fk.parent.name] for r in collected[name]} - {None}
                if values:
                    found = conn.execute(
                        sa.select(parent).where(fk.column.in_(sorted(values, key=str)))
                    ).mappings()
                    collected.setdefault(f"\0{parent.name}", []).extend(dict(r) for r in found)
    merged: dict[str, list[dict]] = {}
    for name, rows in collected.items():
        target = merged.setdefault(name.lstrip("\0"), [])
        seen = {json.dumps(r, sort_keys=True, default=str) for r in target}
        for row in rows:
            text = json.dumps(row, sort_keys=True, default=str)
            if text not in seen:
                seen.add(text)
                target.append(row)
    return {
        name: [{k: _json_value(v) for k, v in row.items()} for row in rows]
        for name, rows in merged.items()
        if rows
    }


def bundle(rows: dict[str, list[dict]], *, company: str) -> bytes:
    """A ZIP with data.json (every table) and one CSV per table (UTF-8 with BOM, for spreadsheets)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "data.json",
            json.dumps({"company": company, "tables": rows}, ensure_ascii=False, indent=1, default=str),
        )
        for table, items in rows.items():
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(items[0]))
            writer.writeheader()
            for item in items:
                writer.writerow(
                    {
                        k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else v
                        for k, v in item.items()
                    }
                )
            z.writestr(f"{table}.csv", "\ufeff" + text.getvalue())
    return out.getvalue()


def store_copy(
    store: Engine, keyring, *, company_id: str, run_id: str, ref: str, data: bytes, expires: dt.datetime
) -> None:
    key = new_data_key()
    kek_id, wrapped = keyring.wrap_data_key(key)
    nonce = os.urandom(12)
    aad = f"dereg-copy|{company_id}|{run_id}|{ref}".encode()
    sealed = nonce + AESGCM(key).encrypt(nonce, data, aad)
    with store.begin() as conn:
        conn.execute(
            copies.delete().where(
                copies.c.company_id == company_id, copies.c.run_id == run_id, copies.c.recipient_ref == ref
            )
        )
        conn.execute(
            copies.insert().values(
                company_id=company_id,
                run_id=run_id,
                recipient_ref=ref,
                kek_id=kek_id,
                wrapped_key=base64.b64encode(wrapped).decode("ascii"),
                sealed=sealed,
                expires_at=expires.astimezone(dt.UTC).isoformat(),
                created_at=dt.datetime.now(dt.UTC).isoformat(),
            )
        )


def load_copy(store: Engine, keyring, *, company_id: str, run_id: str, ref: str) -> bytes:
    """The decrypted ZIP of a customer's copy; FulfilmentError when it is gone or has expired."""
    with store.connect() as conn:
        row = conn.execute(
            sa.select(copies).where(
                copies.c.company_id == company_id, copies.c.run_id == run_id, copies.c.recipient_ref == ref
            )
        ).first()
    if row is None or dt.datetime.fromisoformat(row.expires_at) <= dt.datetime.now(dt.UTC):
        raise FulfilmentError("this copy is no longer available; please contact the company")
    key = keyring.unwrap_data_key(
        row.kek_id, base64.b64decode(row.wrapped_key), what="the key of a customer copy"
    )
    aad = f"dereg-copy|{company_id}|{run_id}|{ref}".encode()
    return AESGCM(key).decrypt(row.sealed[:12], row.sealed[12:], aad)


def purge_expired_copies(store: Engine, *, now: dt.datetime | None = None) -> int:
    """Delete copies whose link has expired; returns how many."""
    moment = (now or dt.datetime.now(dt.UTC)).isoformat()
    with store.begin() as conn:
        return conn.execute(copies.delete().where(copies.c.expires_at <= moment)).rowcount or 0


def pending_copies(store: Engine, company_id: str, run_id: str) -> dict[str, Any]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(copies.c.expires_at).where(copies.c.company_id == company_id, copies.c.run_id == run_id)
        ).all()
    return {"copies": len(rows), "last_expires_at": max((r.expires_at for r in rows), default=None)}


def transfer(source: Engine, successor: Engine, rows: dict[str, list[dict]]) -> dict[str, int]:
    """Insert `rows` (from customer_rows) into the successor: parents first, tables created when
    missing (same columns, types and keys), rows whose primary key is already there skipped.
    Returns rows inserted per table."""
    md = sa.MetaData()
    md.reflect(source, only=list(rows))
    target_md = sa.MetaData()
    target_md.reflect(successor)
    inserted: dict[str, int] = {}
    missing = [t for t in md.sorted_tables if t.name not in target_md.tables]
    if missing:
        md.create_all(successor, tables=missing)
        target_md = sa.MetaData()
        target_md.reflect(successor)
    with successor.begin() as conn:
        for table in md.sorted_tables:
            if table.name not in rows:
                continue
            target = target_md.tables[table.name]
            pk = [c.name for c in target.primary_key.columns]
            items = [_from_json(row, table) for row in rows[table.name]]
            if pk:
                existing = {
                    tuple(r)
                    for r in conn.execute(
                        sa.select(*[target.c[k] for k in pk]).where(
                            sa.tuple_(*[target.c[k] for k in pk]).in_(
                                [tuple(i[k] for k in pk) for i in items]
                            )
                            if len(pk) > 1
                            else target.c[pk[0]].in_([i[pk[0]] for i in items])
                        )
                    )
                }
                items = [i for i in items if tuple(i[k] for k in pk) not in existing]
            if items:
                conn.execute(target.insert(), items)
            inserted[table.name] = len(items)
    return inserted


def _from_json(row: dict, table: sa.Table) -> dict:
    out = {}
    for name, value in row.items():
        column = table.c[name]
        if isinstance(value, dict) and "base64" in value:
            value = base64.b64decode(value["base64"])
        elif isinstance(value, str):
            try:
                python_type = column.type.python_type
            except NotImplementedError:
                python_type = str
            if python_type is dt.datetime:
                value = dt.datetime.fromisoformat(value)
            elif python_type is dt.date:
                value = dt.date.fromisoformat(value)
            elif python_type is decimal.Decimal:
                value = decimal.Decimal(value)
        out[name] = value
    return out


def refs_to_addresses(recipients: Iterable, pseudonym_key: bytes) -> dict[str, Any]:
    from dereg.notify.records import recipient_ref

    return {recipient_ref(pseudonym_key, r.email): r for r in recipients}


# ---- the fulfil_requests stage -----------------------------------------------------------------

COPY_SUBJECT, COPY_TEXT = "copy_subject.txt.j2", "copy.txt.j2"
#: log a progress line every this many requests fulfilled
PROGRESS_EVERY = 50


def copy_message(
    *,
    company_name_zh: str,
    company_name_en: str,
    sender: str,
    reply_to: str,
    recipient,
    url: str,
    expires: dt.datetime,
    attachment: bytes | None = None,
) -> EmailMessage:
    """The e-mail that brings a customer their copy: the ZIP attached, or an expiring link to it.
    zh-CN first, English second, from the `copy_subject.txt.j2` and `copy.txt.j2` templates."""
    from email.utils import format_datetime, make_msgid

    from dereg.notify.render import template_environment

    env = template_environment()
    values = {
        "company_name_zh": company_name_zh,
        "company_name_en": company_name_en,
        "recipient": recipient,
        "url": url,
        "expires": expires,
        "attached": attachment is not None,
    }
    message = EmailMessage()
    message.set_content(env.get_template(COPY_TEXT).render(**values), charset="utf-8")
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="zip", filename="personal-data.zip"
        )
    message["Subject"] = env.get_template(COPY_SUBJECT).render(**values).strip()
    message["From"] = sender
    message["To"] = recipient.email
    message["Reply-To"] = reply_to
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(
        domain=sender.rsplit("@", 1)[-1].strip("> ") if "@" in sender else None
    )
    return message


def _by_choice(pending: dict[str, str], choice: str) -> int:
    return sum(1 for c in pending.values() if c == choice)


def fulfilment_preview(store: Engine, company_id: str, run_id: str) -> dict[str, Any]:
    """What a dry run reports instead of fulfilling: the answers, and the requests it would fulfil."""
    pending = open_requests(store, company_id, run_id)
    return {
        "answers": answer_counts(store, company_id, run_id),
        "would_fulfil": {c: _by_choice(pending, c) for c in ("copy", "transfer")},
    }


def fulfil_requests(
    manifest,
    *,
    run_id: str,
    store: Engine,
    keyring,
    connectors: Connectors,
    on_fulfilled: Callable[[str, str, dict], None],
    log,
) -> dict[str, Any]:
    """Fulfil every open copy or transfer request of run `run_id`; returns the answers' counts and
    what was fulfilled. Fails, saying what to do, when a request cannot be fulfilled.

    :param manifest: the company manifest (sources, successor, sender, copy delivery, SMTP).
    :param keyring: the keyring: pseudonym key (recipient references, link tokens), key wrapping.
    :param connectors: reaches the sources, the successor's database and the SMTP relay.
    :param on_fulfilled: called with (recipient_ref, choice, detail) as each request is done, to
        write it to the ledger; detail holds counts and the link's expiry, never an address.
    :param log: where progress lines go (the task log).
    """
    company_id = manifest.company_id
    pending = open_requests(store, company_id, run_id)
    counts = answer_counts(store, company_id, run_id)
    log.info(
        "Answers: %s; open requests: %d copy, %d transfer",
        counts,
        _by_choice(pending, "copy"),
        _by_choice(pending, "transfer"),
    )
    if _by_choice(pending, "transfer") and not manifest.successor_conn_id:
        raise DeregError(
            f"{_by_choice(pending, 'transfer')} customer(s) of {company_id} asked for a "
            "transfer, but the manifest names no successor. Add successor: {name, conn_id} to the manifest, "
            "or waive each request with a reason (dereg answers waive), then clear this task"
        )
    done = {"copy": 0, "transfer": 0, "rows_transferred": 0, "not_found": 0}
    if pending:
        with _Fulfilment(manifest, run_id, store, keyring, connectors, log) as fulfilment:
            fulfilment.run(pending, done, on_fulfilled)
    still = open_requests(store, company_id, run_id)
    if still:
        raise DeregError(
            f"{len(still)} request(s) of {company_id} could not be fulfilled (their address is no "
            "longer in the source). Waive each with a reason (dereg answers waive) and clear this task"
        )
    return {"answers": counts, "fulfilled": done}


class _Fulfilment:
    """One pass over the open requests; holds the SMTP session (opened at the first copy) and the
    successor's engine, and closes both however the pass ends."""

    def __init__(self, manifest, run_id: str, store: Engine, keyring, connectors: Connectors, log) -> None:
        self.m, self.company_id, self.run_id = manifest, manifest.company_id, run_id
        self.store, self.keyring, self.connectors, self.log = store, keyring, connectors, log
        self.expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(
            days=manifest.copy_link_days
        )
        self.successor = connectors.engine(manifest.successor_conn_id) if manifest.successor_conn_id else None
        self.smtp = None
        self.too_large = 0

    def __enter__(self) -> _Fulfilment:
        return self

    def __exit__(self, *exc) -> None:
        if self.smtp is not None:
            self.smtp.close()
        if self.successor is not None:
            self.successor.dispose()

    def run(
        self, pending: dict[str, str], done: dict, on_fulfilled: Callable[[str, str, dict], None]
    ) -> None:
        for source in self.m.sources:
            if not source.reaches_customers:
                continue
            with self.connectors.database(source.conn_id) as engine:
                by_ref = refs_to_addresses(
                    recipients_of(engine, source).reachable, self.keyring.pseudonym_key
                )
                for ref, choice in sorted(pending.items()):
                    recipient = by_ref.get(ref)
                    if recipient is None:
                        continue
                    rows = customer_rows(
                        engine,
                        subject_table=source.subject_table,
                        notify=source.notify,
                        address=recipient.email,
                    )
                    if choice == "copy":
                        detail = self.copy(ref, recipient, rows, sent_so_far=done["copy"])
                    else:
                        detail = self.transfer(engine, rows)
                        done["rows_transferred"] += sum(detail["inserted"].values())
                    mark_fulfilled(
                        self.store,
                        company_id=self.company_id,
                        run_id=self.run_id,
                        ref=ref,
                        choice=choice,
                        status="done",
                        detail=json.dumps(detail, ensure_ascii=False),
                        actor="dereg",
                    )
                    on_fulfilled(ref, choice, detail)
                    done[choice] += 1
                    if (
                        done["copy"] + done["transfer"]
                        and (done["copy"] + done["transfer"]) % PROGRESS_EVERY == 0
                    ):
                        self.log.info(
                            "Fulfilled %d copy and %d transfer request(s)", done["copy"], done["transfer"]
                        )
        if self.too_large:
            self.log.info(
                "%d cop(ies) exceeded notify.copy_attachment_max_kb (%d KiB) and were sent as a link instead",
                self.too_large,
                self.m.copy_attachment_max_kb,
            )
        self.log.info("Fulfilled %d copy and %d transfer request(s)", done["copy"], done["transfer"])

    def copy(self, ref: str, recipient, rows: dict[str, list[dict]], *, sent_so_far: int) -> dict:
        """Store the customer's copy encrypted, e-mail it (link or attachment); the ledger detail."""
        from email.policy import SMTP
        from email.utils import parseaddr

        from dereg.notify.deliver import deliver_one

        m, company_id = self.m, self.company_id
        store_copy(
            self.store,
            self.keyring,
            company_id=company_id,
            run_id=self.run_id,
            ref=ref,
            data=bundle(rows, company=f"{m.name_zh} / {m.name_en}"),
            expires=self.expires,
        )
        token = make_token(self.keyring.pseudonym_key, "copy", company_id, self.run_id, ref, self.expires)
        attachment, delivery = None, "link"
        if m.copy_delivery == "attachment":
            # what is attached is the stored (encrypted at rest) copy, decrypted
            attachment = load_copy(
                self.store, self.keyring, company_id=company_id, run_id=self.run_id, ref=ref
            )
            if len(attachment) > m.copy_attachment_max_kb * 1024:
                attachment, self.too_large = None, self.too_large + 1
                delivery = "link (too large to attach)"
            else:
                delivery = "attachment"
        if self.smtp is None:
            self.smtp = self.connectors.smtp_hook(m.smtp_conn_id).open()
        message = copy_message(
            company_name_zh=m.name_zh,
            company_name_en=m.name_en,
            sender=m.sender,
            reply_to=m.reply_to,
            recipient=recipient,
            url=f"{public_base_url(m)}/dereg/copy/#{token}",  # fragment: see dereg.web.answers_app
            expires=self.expires,
            attachment=attachment,
        )
        status, error = deliver_one(
            self.smtp, parseaddr(m.sender)[1], recipient.email, message.as_bytes(policy=SMTP)
        )
        if status != "sent":
            raise DeregError(
                f"the copy for customer {ref[:12]} of {company_id} could not be e-mailed "
                f"({error}); {sent_so_far} cop(ies) sent so far. Fix the relay or the "
                "address, or waive the request with a reason, then clear this task"
            )
        return {
            "rows": {t: len(r) for t, r in rows.items()},
            "link_expires": self.expires.isoformat(),
            "delivery": delivery,
        }

    def transfer(self, engine: Engine, rows: dict[str, list[dict]]) -> dict:
        """Insert the customer's rows into the successor's database; the ledger detail."""
        inserted = transfer(engine, self.successor, rows)
        return {
            "rows": {t: len(r) for t, r in rows.items()},
            "inserted": inserted,
            "successor": self.m.successor_name,
        }
