"""Who receives a notice: the addresses the manifest's `sources[].notify` points at.

Three shapes (`NotifySpec.shape`): the subjects' own columns (the subject table); a table the
subjects refer to (`link_column` in the subject table: guardians, whose notice names every child
they are the contact for); a table that refers to the subjects (`subject_column` in that table,
holding the subject's primary key: a profile table). Tables and views alike: a view has no primary
key, so `key_column` names the column the subjects' `link_column` refers to.

One recipient per distinct address (case-insensitive). Contacts without a usable address are
listed (by reference, never by name) for follow-up by other means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.classify import email as email_detector
from dereg.errors import NotifyError

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


def _table(engine: Engine, name: str, alias: str) -> sa.Table:
    try:
        return sa.Table(name, sa.MetaData(), autoload_with=engine).alias(alias)
    except sa.exc.NoSuchTableError:
        raise NotifyError(f"notify: table or view {name} does not exist (check sources[].notify)") from None


def _column(table, column: str, what: str) -> sa.ColumnElement:
    if column not in table.c:
        raise NotifyError(
            f"notify: {table.element.name} has no column {column} ({what}); name one of its columns in "
            "sources[].notify"
        )
    return table.c[column]


def _key(table, column: str | None, why: str) -> sa.ColumnElement:
    """`column`, else the table's single-column primary key (a view has none: name the column)."""
    if column:
        return _column(table, column, "key_column")
    pk = list(table.element.primary_key.columns)
    if len(pk) != 1:
        raise NotifyError(
            f"notify: {table.element.name} has no single-column primary key for {why}; "
            "name the key column (sources[].notify.key_column)"
        )
    return table.c[pk[0].name]


def _primary_key(table) -> list[sa.ColumnElement]:
    return [table.c[c.name] for c in table.element.primary_key.columns]


def collect_recipients(
    engine: Engine,
    *,
    subject_table: str,
    notify_table: str | None,
    email_column: str,
    name_column: str,
    link_column: str | None = None,
    key_column: str | None = None,
    subject_column: str | None = None,
) -> RecipientList:
    """The recipients of one source (see the module docstring for the shapes). A subject whose
    contact row is missing (no guardian, no profile) is listed as unreachable too."""
    subjects = _table(engine, subject_table, "subject")
    notify_table = notify_table or subject_table
    subject_pk = _primary_key(subjects)
    child = subjects.c["name"] if link_column and "name" in subjects.c else None
    if link_column:  # guardians: the subjects refer to them
        contacts = _table(engine, notify_table, "contact")
        ref = [_key(contacts, key_column, f"{subject_table}.{link_column} to refer to")]
        on = _column(subjects, link_column, "link_column") == ref[0]
        present = ref[0]  # NULL: the subject has no contact row
    elif subject_column or notify_table != subject_table:  # a profile table refers to the subjects
        if not subject_column:
            raise NotifyError(
                f"notify: table {notify_table} is not the subject table {subject_table}; name how it reaches "
                "the subjects (sources[].notify.link_column or subject_column)"
            )
        contacts = _table(engine, notify_table, "contact")
        present = _column(contacts, subject_column, "subject_column")
        on = present == _key(subjects, None, f"{notify_table}.{subject_column} to refer to")
        ref = subject_pk
    else:  # the subjects' own columns
        contacts, on, ref, present = subjects, None, subject_pk, sa.literal(1)
    email = _column(contacts, email_column, "email_column")
    name = _column(contacts, name_column, "name_column")
    columns = [*ref, *subject_pk, present, email, name, child if child is not None else sa.literal("")]
    join = subjects if on is None else subjects.outerjoin(contacts, on)
    query = sa.select(*columns).select_from(join).order_by(*ref, *subject_pk)
    n_ref, n_pk = len(ref), len(subject_pk)
    by_address: dict[str, Recipient] = {}
    unreachable: dict[str, Unreachable] = {}
    with engine.connect() as conn:
        for i, row in enumerate(conn.execution_options(yield_per=BATCH).execute(query)):
            contact_id = ",".join(str(v) for v in row[:n_ref] if v is not None)
            has_contact, address, name_value, child_name = row[n_ref + n_pk :]
            address = (address or "").strip()
            if not address or not email_detector.is_valid(address):
                if has_contact is None:  # the subject has no contact row (no guardian, no profile)
                    subject_id = ",".join(str(v) for v in row[n_ref : n_ref + n_pk]) or f"row {i + 1}"
                    key, reason = f"subject {subject_id}", f"no row in {notify_table}"
                else:
                    key = contact_id or f"row {i + 1}"
                    reason = "no e-mail address" if not address else "invalid e-mail address"
                item = unreachable.setdefault(key, Unreachable(key, 0, reason))
                item.children += 1
                continue
            recipient = by_address.setdefault(
                address.lower(), Recipient(address, name_value or "", [], contact_id)
            )
            if child_name and child_name not in recipient.children:
                recipient.children.append(child_name)
    return RecipientList(reachable=list(by_address.values()), unreachable=list(unreachable.values()))


def recipients_of(engine: Engine, source) -> RecipientList:
    """The notice recipients of a manifest source (`sources[].notify`); none when it reaches none."""
    if not source.reaches_customers:
        return RecipientList()
    n = source.notify
    return collect_recipients(
        engine,
        subject_table=source.subject_table,
        notify_table=source.notify_table,
        email_column=n.email_column,
        name_column=n.name_column,
        link_column=n.link_column,
        key_column=n.key_column,
        subject_column=n.subject_column,
    )
