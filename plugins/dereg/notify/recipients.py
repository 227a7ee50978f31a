"""Who receives a notice: for each subject (a child), the contact row it links to (the guardian).

One recipient per distinct address, naming every child it is the contact for. Contacts without a
usable address are listed (by reference, never by name) for follow-up by other means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.classify import email as email_detector

BATCH = 2000


@dataclass
class Recipient:
    email: str
    name: str
    children: list[str]
    contact_id: str


@dataclass
class Unreachable:
    contact_id: str
    children: int
    reason: str


@dataclass
class RecipientList:
    reachable: list[Recipient] = field(default_factory=list)
    unreachable: list[Unreachable] = field(default_factory=list)


def collect_recipients(
    engine: Engine,
    *,
    subject_table: str,
    notify_table: str,
    email_column: str,
    name_column: str,
    link_column: str,
) -> RecipientList:
    metadata = sa.MetaData()
    subjects = sa.Table(subject_table, metadata, autoload_with=engine)
    contacts = sa.Table(notify_table, metadata, autoload_with=engine)
    contact_pk = list(contacts.primary_key.columns)
    if len(contact_pk) != 1:
        from dereg.errors import NotifyError

        raise NotifyError(
            f"notify table {notify_table} needs a single-column primary key for {subject_table}."
            f"{link_column} to refer to"
        )
    pk = contact_pk[0]
    child_name = subjects.c["name"] if "name" in subjects.c else None
    query = (
        sa.select(
            pk,
            contacts.c[email_column],
            contacts.c[name_column],
            child_name if child_name is not None else sa.literal(""),
        )
        .select_from(subjects.join(contacts, subjects.c[link_column] == pk))
        .order_by(pk, *subjects.primary_key.columns)
    )
    by_address: dict[str, Recipient] = {}
    unreachable: dict[str, Unreachable] = {}
    with engine.connect() as conn:
        for contact_id, address, name, child in conn.execution_options(yield_per=BATCH).execute(query):
            address = (address or "").strip()
            if not address or not email_detector.is_valid(address):
                item = unreachable.setdefault(
                    str(contact_id),
                    Unreachable(
                        str(contact_id), 0, "no e-mail address" if not address else "invalid e-mail address"
                    ),
                )
                item.children += 1
                continue
            recipient = by_address.setdefault(
                address.lower(), Recipient(address, name or "", [], str(contact_id))
            )
            if child and child not in recipient.children:
                recipient.children.append(child)
    return RecipientList(reachable=list(by_address.values()), unreachable=list(unreachable.values()))


def recipients_of(engine: Engine, source) -> RecipientList:
    """The notice recipients of a manifest source: its `notify` table and columns."""
    return collect_recipients(
        engine,
        subject_table=source.subject_table,
        notify_table=source.notify.table,
        email_column=source.notify.email_column,
        name_column=source.notify.name_column,
        link_column=source.notify.link_column,
    )
