"""The company manifest as pydantic models: every field, type, default and constraint, once.

The models mirror the YAML document (`name.zh`, `contacts.sender`, `notify.copy_delivery`, ...),
so the JSON Schema generated from them (docs/manifest.schema.json) is the document's schema.
`Manifest` also offers the flat attributes the stages read (`manifest.sender`,
`manifest.smtp_conn_id`) as properties. Every model forbids unknown fields, so a typo never
silently drops a setting, and is frozen: a loaded manifest is read, never changed.

Messages: a pattern's hint (`HINTS`) and the wording of every error are in `problems.py`; checks
that span fields (unique source ids, the backup region, overrides' categories or `personal`) are
there too, so that they are reported even when another field is wrong.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    StrictInt,
    StrictStr,
    ValidationError,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

RetainAction = Literal["pseudonymize"]
#: what may happen to a table the law keeps (`sources[].retain[].action`); the erasure plan uses these
RETAIN_ACTIONS: tuple[str, ...] = get_args(RetainAction)
CopyDelivery = Literal["link", "attachment"]
COPY_DELIVERIES: tuple[str, ...] = get_args(CopyDelivery)
#: the SMTP provider's default connection id (`SmtpHook.default_conn_name`), used when
#: notify.smtp_conn_id is not given
DEFAULT_SMTP_CONN_ID = "smtp_default"

COMPANY_ID = r"^[a-z][a-z0-9_]{1,62}$"
SOURCE_ID = r"^[a-z][a-z0-9_]{0,62}$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
#: a column override's table may name its schema (`schema.table`)
QUALIFIED_TABLE = r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$"
BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
EMAIL = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$"
HTTP_URL = r"^https?://\S+$"
#: what a value matching each pattern looks like, for the "is not valid" problems
HINTS: dict[str, str] = {
    COMPANY_ID: "lower-case letters, digits and _ , starting with a letter",
    SOURCE_ID: "lower-case letters, digits and _ , starting with a letter",
    IDENTIFIER: "a table or column name (letters, digits and _ , not starting with a digit)",
    QUALIFIED_TABLE: "a table name (`schema.table` outside the default schema)",
    BUCKET: "an S3 bucket name: 3-63 lower-case letters, digits, '.' or '-'",
    EMAIL: "an e-mail address",
    HTTP_URL: "an http(s) URL",
}


def problem(message: str) -> PydanticCustomError:
    """An error whose message is ours, reported as it is (see problems.py)."""
    return PydanticCustomError("dereg", "{message}", {"message": message})


def _blank_is_none(value: Any) -> Any:
    # an empty or blank text is as good as a missing one: "is required", or the default
    return None if isinstance(value, str) and not value.strip() else value


def _none_is(default: Any) -> BeforeValidator:
    # `retain:` with nothing after it in YAML is null: read it as the empty default
    return BeforeValidator(lambda value: default() if value is None else value)


def _pattern(regex: str) -> Any:
    # the constraint first, so that it is the string's own (and in the JSON Schema)
    return Annotated[str, Field(pattern=regex), BeforeValidator(_blank_is_none)]


def _strip_slashes(value: str) -> str:
    return value.strip("/")


def _iso_date(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date) or value is None:
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise problem(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _known_category(value: str) -> str:
    from dereg.classify.taxonomy import load_taxonomy

    if value not in load_taxonomy():
        raise problem(f"{value!r} is not in include/policy/taxonomy.yaml")
    return value


def _says_why(value: str) -> str:
    if len(value.strip()) < 5:
        raise problem("say why (at least 5 characters); it goes in the ledger and the report")
    return value


def _one_approver(value: Any, handler: Any) -> Any:
    # one problem per bad entry, in words, instead of one per member of the union
    try:
        return handler(value)
    except ValidationError:
        raise problem(
            "must be a user name, or a mapping with exactly `name` (the user name) and `id` (the "
            "auth manager's user id, e.g. FAB's numeric id from `airflow users list`)"
        ) from None


Text = Annotated[str, BeforeValidator(_blank_is_none)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_is_none)]
Count = Annotated[int, Strict(), Field(ge=1)]
Flag = Annotated[bool, Strict()]
CompanyId = _pattern(COMPANY_ID)
SourceId = _pattern(SOURCE_ID)
Identifier = _pattern(IDENTIFIER)
BucketName = _pattern(BUCKET)
Email = _pattern(EMAIL)
QualifiedTable = _pattern(QUALIFIED_TABLE)
Category = Annotated[str, AfterValidator(_known_category)]


class Spec(BaseModel):
    """Base of the manifest's models: unknown fields are errors, values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __init__(self, *args: Any, **data: Any) -> None:
        # positional arguments in field order, as these classes took when they were dataclasses
        super().__init__(**dict(zip(type(self).model_fields, args, strict=False)), **data)


def _not_a_word(value: Any) -> Any:
    # `notify: none` written as a word: say how to write it
    if isinstance(value, str):
        raise problem(
            'must be a mapping: the columns that reach the customers, or {none: true, reason: "why no '
            'customer can be reached"} (docs/manifest.md)'
        )
    return value


class NotifySpec(Spec):
    """Who receives a source's notices, in one of three shapes (checked in problems.py):

    - the subjects themselves, from columns of the subject table (`table` left out, or naming it);
    - the rows of `table` that the subject table refers to (guardians): `link_column` is the
      subject table's column holding `table`'s key (`key_column`, default its primary key);
    - the subjects themselves, from a `table` that refers to them (a profile table):
      `subject_column` is `table`'s column holding the subject table's primary key.

    Or `none: true` with the `reason` no customer of this source can be reached."""

    #: the table holding the addresses; default: the subject table
    table: Annotated[Identifier | None, BeforeValidator(_blank_is_none)] = None
    email_column: Annotated[Identifier | None, BeforeValidator(_blank_is_none)] = None
    name_column: Annotated[Identifier | None, BeforeValidator(_blank_is_none)] = None
    #: a column of the subject table holding `table`'s key (guardians)
    link_column: Annotated[Identifier | None, BeforeValidator(_blank_is_none)] = None
    #: the column of `table` that `link_column` refers to; default `table`'s primary key
    key_column: Annotated[Identifier | None, BeforeValidator(_blank_is_none)] = None
    #: a column of `table` holding the subject table's primary key (a profile table)
    subject_column: Annotated[Identifier | None, BeforeValidator(_blank_is_none)] = None
    #: no customer of this source can be reached; `reason` says why
    none: Flag = False
    reason: Annotated[OptionalText, AfterValidator(lambda v: _says_why(v) if v is not None else v)] = None

    def table_for(self, subject_table: str) -> str:
        """The table the addresses are read from."""
        return self.table or subject_table

    @property
    def shape(self) -> Literal["subject", "referred", "referring", "none"]:
        """`subject`: the subject table's own columns; `referred`: a table the subjects refer to
        (guardians); `referring`: a table that refers to the subjects (a profile table)."""
        if self.none:
            return "none"
        if self.link_column:
            return "referred"
        if self.subject_column:
            return "referring"
        return "subject"


class RetainSpec(Spec):
    """A table the law says to keep: its rows stay, their personal columns are pseudonymized."""

    table: Identifier
    law: Text
    years: Count
    action: RetainAction = "pseudonymize"


class ColumnOverride(Spec):
    """Pin a column's categories ([] = not personal), with the reason that goes to the ledger."""

    table: QualifiedTable
    column: Text
    categories: Annotated[list[Category], _none_is(list)] = []
    reason: Annotated[Text, AfterValidator(_says_why)]
    #: `personal: false` in the manifest, instead of categories: the column is not personal
    personal: Flag = True


class UnreadableTable(Spec):
    """A table classification could not read that the erasure plan may keep as it is, and why."""

    table: QualifiedTable
    reason: Annotated[Text, AfterValidator(_says_why)]


class ClassifySpec(Spec):
    """How a source is classified."""

    sample_size: Annotated[int, Strict(), Field(ge=10)] = 2000
    #: tables above this many rows get their own classification task
    large_table_rows: Count = 500_000
    #: tables that must be classified; if one cannot be read the stage fails (else it is reported)
    required_tables: Annotated[list[Identifier], _none_is(list)] = []
    overrides: Annotated[list[ColumnOverride], _none_is(list)] = []
    #: unreadable tables the plan keeps (otherwise an unreadable table fails the plan)
    keep_unreadable: Annotated[list[UnreadableTable], _none_is(list)] = []


class LinkSpec(Spec):
    """A link the manifest adds (rows of `table` belong to rows of `references` through `columns`)
    or, with `reject: true`, refuses (an inferred link that is wrong), with the reason."""

    table: QualifiedTable
    columns: Annotated[list[Identifier], Field(min_length=1)]
    #: the referenced table; not needed with `reject: true`
    references: Annotated[QualifiedTable | None, BeforeValidator(_blank_is_none)] = None
    #: the referenced columns; default: the referenced table's primary key
    ref_columns: Annotated[list[Identifier], _none_is(list)] = []
    reject: Flag = False
    #: false keeps an added link whose values do not match the referenced keys (rows whose
    #: referenced row is gone); by default such a link is an error
    check_values: Flag = True
    reason: Annotated[Text, AfterValidator(_says_why)]


DecisionAction = Literal["erase", "pseudonymize", "keep"]
DECISION_ACTIONS: tuple[str, ...] = get_args(DecisionAction)


class DecisionSpec(Spec):
    """What to do with a table that holds personal data but no link to the subjects (settings, CMS
    pages, a catalogue): `erase` deletes its rows, `pseudonymize` replaces its personal columns,
    `keep` leaves the table as it is (personal data that is not the customers': staff accounts, the
    company's own addresses), with the reason the approver and the certificate read. (A column that
    is not personal at all is decided by `classify.overrides` with `personal: false`.)"""

    table: QualifiedTable
    action: DecisionAction
    reason: Annotated[Text, AfterValidator(_says_why)]


class SourceSpec(Spec):
    """A SQL database holding customer data."""

    id: SourceId
    conn_id: Text
    subject_table: Identifier
    #: who receives the notices; a real run refuses a source without it (see `notify.none`)
    notify: Annotated[NotifySpec | None, BeforeValidator(_not_a_word)] = None
    retain: Annotated[list[RetainSpec], _none_is(list)] = []
    classify: Annotated[ClassifySpec, _none_is(dict)] = ClassifySpec()
    #: links to add to (or reject from) what inventory finds
    links: Annotated[list[LinkSpec], _none_is(list)] = []
    #: decisions on personal data that is not linked to the subjects
    decisions: Annotated[list[DecisionSpec], _none_is(list)] = []

    @property
    def required_tables(self) -> list[str]:
        """The manifest's required tables plus the subject and notice tables, which always are."""
        names = [self.subject_table] + ([self.notify.table] if self.notify and self.notify.table else [])
        return list(dict.fromkeys(names + self.classify.required_tables))

    @property
    def notify_table(self) -> str | None:
        """The table notices' addresses are read from; None when the source reaches no customer."""
        return self.notify.table_for(self.subject_table) if self.reaches_customers else None

    @property
    def reaches_customers(self) -> bool:
        """The manifest says how to reach this source's customers (not absent, not `none: true`)."""
        return self.notify is not None and not self.notify.none


class ObjectSourceSpec(Spec):
    """An S3 prefix holding customer files (uploads, exports), inventoried and scanned."""

    id: SourceId
    conn_id: Text
    bucket: BucketName
    prefix: Annotated[str, _none_is(str), AfterValidator(_strip_slashes)] = ""


class BackupSpec(Spec):
    """Where the encrypted backup goes, and for how long it is kept."""

    conn_id: Text
    bucket: BucketName
    prefix: Annotated[Text, AfterValidator(_strip_slashes)]
    region: Text
    retention_days: Count
    object_lock: Flag = True
    cross_border_assessment: OptionalText = None
    #: seal each subject's personal columns under a key of its own (format version 5, PostgreSQL
    #: sources), so `dereg shred-subject` can erase one customer inside a locked backup
    subject_keys: Flag = True


class Names(Spec):
    """The company's names, shown in notices and certificates."""

    zh: Text
    en: Text


class Contacts(Spec):
    """Addresses notices and alerts use."""

    operations_email: Email
    sender: Text
    #: Reply-To of notices; the operations address when not given
    reply_to: Annotated[Annotated[str, Field(pattern=EMAIL)] | None, BeforeValidator(_blank_is_none)] = None
    complaint: Text


class ApproverRef(Spec):
    """An approver whose auth-manager user id is not the name (FAB's numeric ids)."""

    name: Text
    id: Annotated[StrictStr | StrictInt, BeforeValidator(_blank_is_none), AfterValidator(str)]


Approver = Annotated[Annotated[str, Field(min_length=1)] | ApproverRef, WrapValidator(_one_approver)]


class Approval(Spec):
    """Who may approve the erasure (never the person who triggered the run)."""

    approvers: Annotated[list[Approver], Field(min_length=1)]


class NotifySettings(Spec):
    """How notices and customers' copies are sent; every field has a default."""

    #: the Airflow SMTP connection notices and copies are sent through
    smtp_conn_id: Text = DEFAULT_SMTP_CONN_ID
    #: at most this many notices a minute (relays throttle or blacklist bursts)
    rate_per_minute: Count = 3000
    #: public address of the Airflow API server, for the customers' answer links
    answer_base_url: Annotated[
        Annotated[str, Field(pattern=HTTP_URL)] | None,
        BeforeValidator(_blank_is_none),
        AfterValidator(lambda url: url.rstrip("/") or None if url else None),
    ] = None
    #: days a customer's copy stays downloadable
    copy_link_days: Count = 14
    #: how a customer's copy reaches them: an expiring download link, or attached to the e-mail
    copy_delivery: CopyDelivery = "link"
    #: copies larger than this are sent as a link even when copy_delivery is "attachment"
    copy_attachment_max_kb: Count = 10240


class Successor(Spec):
    """The organisation customers may ask their data to be transferred to."""

    name: Text
    conn_id: Text


class Manifest(Spec):
    """A company manifest: what Dereg cannot infer about a company (docs/manifest.md)."""

    model_config = ConfigDict(title="Dereg company manifest")

    company_id: CompanyId
    name: Names
    legal_basis: Text
    closure_date: Annotated[dt.date, BeforeValidator(_iso_date)]
    contacts: Contacts
    approval: Approval
    sources: Annotated[list[SourceSpec], Field(min_length=1)]
    object_sources: Annotated[list[ObjectSourceSpec], _none_is(list)] = []
    backup: BackupSpec
    notify: Annotated[NotifySettings, _none_is(dict)] = NotifySettings()
    successor: Successor | None = None

    #: the file the manifest was read from (set by `parse_manifest`)
    _path: str = PrivateAttr(default="")

    @property
    def path(self) -> str:
        return self._path

    @property
    def dag_id(self) -> str:
        return f"closure__{self.company_id}"

    # the flat names the stages have always used
    @property
    def name_zh(self) -> str:
        return self.name.zh

    @property
    def name_en(self) -> str:
        return self.name.en

    @property
    def operations_email(self) -> str:
        return self.contacts.operations_email

    @property
    def sender(self) -> str:
        return self.contacts.sender

    @property
    def reply_to(self) -> str:
        return self.contacts.reply_to or self.contacts.operations_email

    @property
    def complaint(self) -> str:
        return self.contacts.complaint

    @property
    def approvers(self) -> list[str]:
        """The approvers' user names."""
        return [a if isinstance(a, str) else a.name for a in self.approval.approvers]

    @property
    def approver_ids(self) -> dict[str, str]:
        """Approver name -> the auth manager's user id, where it is not the name (FAB's numeric ids)."""
        return {a.name: a.id for a in self.approval.approvers if isinstance(a, ApproverRef)}

    @property
    def smtp_conn_id(self) -> str:
        return self.notify.smtp_conn_id

    @property
    def rate_per_minute(self) -> int:
        return self.notify.rate_per_minute

    @property
    def answer_base_url(self) -> str | None:
        return self.notify.answer_base_url

    @property
    def copy_link_days(self) -> int:
        return self.notify.copy_link_days

    @property
    def copy_delivery(self) -> str:
        return self.notify.copy_delivery

    @property
    def copy_attachment_max_kb(self) -> int:
        return self.notify.copy_attachment_max_kb

    @property
    def successor_name(self) -> str | None:
        return self.successor.name if self.successor else None

    @property
    def successor_conn_id(self) -> str | None:
        return self.successor.conn_id if self.successor else None

    def source(self, source_id: str) -> SourceSpec:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)

    def connection_ids(self) -> list[tuple[str, str]]:
        """(path, conn_id) of every Airflow connection the manifest names."""
        pairs = [(f"sources[{i}].conn_id", s.conn_id) for i, s in enumerate(self.sources)]
        pairs += [(f"object_sources[{i}].conn_id", s.conn_id) for i, s in enumerate(self.object_sources)]
        pairs.append(("backup.conn_id", self.backup.conn_id))
        pairs.append(("notify.smtp_conn_id", self.smtp_conn_id))
        if self.successor_conn_id:
            pairs.append(("successor.conn_id", self.successor_conn_id))
        return pairs
