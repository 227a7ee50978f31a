"""Company manifests: what Dereg cannot infer about a company (connections, retention, approvers).

A manifest is YAML in `include/companies/<id>.yaml`; its schema is documented in docs/manifest.md.
`load_manifest` checks the whole document and reports every problem at once, each with its path
(`sources[1].conn_id: ...`), so an operator fixes a manifest in one pass. Checks that need Airflow
(does a connection exist?) are in `connection_problems`, run by the preflight task.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dereg import config
from dereg.errors import ManifestError

COMPANY_ID = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
SOURCE_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
RETAIN_ACTIONS = ("pseudonymize",)
#: the SMTP provider's default connection id, used when notify.smtp_conn_id is not given
DEFAULT_SMTP_CONN_ID = "smtp_default"
COPY_DELIVERIES = ("link", "attachment")


@dataclass
class NotifySpec:
    table: str
    email_column: str
    name_column: str
    link_column: str


@dataclass
class RetainSpec:
    table: str
    law: str
    years: int
    action: str = "pseudonymize"


@dataclass
class ColumnOverride:
    """Pin a column's categories ([] = not personal), with the reason that goes to the ledger."""

    table: str
    column: str
    categories: list[str]
    reason: str


@dataclass
class ClassifySpec:
    sample_size: int = 2000
    #: tables above this many rows get their own classification task
    large_table_rows: int = 500_000
    #: tables that must be classified; if one cannot be read the stage fails (else it is reported)
    required_tables: list[str] = field(default_factory=list)
    overrides: list[ColumnOverride] = field(default_factory=list)


@dataclass
class SourceSpec:
    id: str
    conn_id: str
    subject_table: str
    notify: NotifySpec | None
    retain: list[RetainSpec] = field(default_factory=list)
    classify: ClassifySpec = field(default_factory=ClassifySpec)

    @property
    def required_tables(self) -> list[str]:
        """The manifest's required tables plus the subject and notice tables, which always are."""
        names = [self.subject_table] + ([self.notify.table] if self.notify else [])
        return list(dict.fromkeys(names + self.classify.required_tables))


@dataclass
class ObjectSourceSpec:
    """An S3 prefix holding customer files (uploads, exports), inventoried and scanned."""

    id: str
    conn_id: str
    bucket: str
    prefix: str


@dataclass
class BackupSpec:
    conn_id: str
    bucket: str
    prefix: str
    region: str
    retention_days: int
    object_lock: bool = True
    cross_border_assessment: str | None = None


@dataclass
class Manifest:
    company_id: str
    name_zh: str
    name_en: str
    legal_basis: str
    closure_date: dt.date
    operations_email: str
    sender: str
    reply_to: str
    complaint: str
    approvers: list[str]
    sources: list[SourceSpec]
    backup: BackupSpec
    #: the Airflow SMTP connection notices and copies are sent through
    smtp_conn_id: str = "smtp_default"
    path: str = ""
    #: at most this many notices a minute (relays throttle or blacklist bursts)
    rate_per_minute: int = 3000
    object_sources: list[ObjectSourceSpec] = field(default_factory=list)
    #: public address of the Airflow API server, for the customers' answer links
    answer_base_url: str | None = None
    #: days a customer's copy stays downloadable
    copy_link_days: int = 14
    #: how a customer's copy reaches them: "link" (expiring download link) or "attachment"
    copy_delivery: str = "link"
    #: copies larger than this are sent as a link even when copy_delivery is "attachment"
    copy_attachment_max_kb: int = 10240
    #: the organisation customers may ask their data to be transferred to
    successor_name: str | None = None
    successor_conn_id: str | None = None
    #: approver name -> the auth manager's user id, where it is not the name (FAB's numeric ids)
    approver_ids: dict[str, str] = field(default_factory=dict)

    @property
    def dag_id(self) -> str:
        return f"closure__{self.company_id}"

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


def allowed_regions() -> list[str]:
    """Backup regions that need no cross-border assessment (include/policy/regions.yaml)."""
    data = yaml.safe_load((config.policy_dir() / "regions.yaml").read_text(encoding="utf-8"))
    return list(data["allowed_regions"])


class _Checker:
    """Collects problems with their paths instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str) -> dict:
        if value is None:
            self.problem(path, "is required")
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def text(
        self,
        parent: dict,
        key: str,
        path: str,
        *,
        pattern: re.Pattern | None = None,
        hint: str = "",
        required: bool = True,
    ) -> str:
        full = f"{path}.{key}" if path else key
        value = parent.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.problem(full, "is required")
            return ""
        if not isinstance(value, str):
            self.problem(full, f"must be text, got {type(value).__name__}")
            return ""
        if pattern is not None and not pattern.match(value):
            self.problem(full, f"{value!r} is not valid{': ' + hint if hint else ''}")
        return value

    def integer(self, parent: dict, key: str, path: str, *, minimum: int = 1) -> int:
        full = f"{path}.{key}" if path else key
        value = parent.get(key)
        if value is None:
            self.problem(full, "is required")
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(full, f"must be a whole number, got {value!r}")
            return 0
        if value < minimum:
            self.problem(full, f"must be at least {minimum}, got {value}")
        return value

    def unknown_keys(self, value: dict, allowed: set[str], path: str) -> None:
        for key in sorted(set(value) - allowed):
            self.problem(f"{path}.{key}" if path else key, "is not a known field (see docs/manifest.md)")


def parse_manifest(data: Any, source: str = "<manifest>") -> Manifest:
    """Validate a parsed YAML document; raise ManifestError listing every problem."""
    c = _Checker()
    root = c.mapping(data, "(document)")
    c.unknown_keys(
        root,
        {
            "company_id",
            "name",
            "legal_basis",
            "closure_date",
            "contacts",
            "approval",
            "sources",
            "backup",
            "notify",
            "object_sources",
            "successor",
        },
        "",
    )
    company_id = c.text(
        root,
        "company_id",
        "",
        pattern=COMPANY_ID,
        hint="lower-case letters, digits and _ , starting with a letter",
    )
    name = c.mapping(root.get("name"), "name")
    name_zh = c.text(name, "zh", "name") if name else ""
    name_en = c.text(name, "en", "name") if name else ""
    legal_basis = c.text(root, "legal_basis", "")
    closure_raw = root.get("closure_date")
    closure_date = dt.date(1970, 1, 1)
    if closure_raw is None:
        c.problem("closure_date", "is required (YYYY-MM-DD)")
    else:
        try:
            closure_date = (
                closure_raw if isinstance(closure_raw, dt.date) else dt.date.fromisoformat(str(closure_raw))
            )
        except ValueError:
            c.problem("closure_date", f"{closure_raw!r} is not a date (YYYY-MM-DD)")

    contacts = c.mapping(root.get("contacts"), "contacts")
    operations_email = c.text(
        contacts, "operations_email", "contacts", pattern=EMAIL, hint="an e-mail address"
    )
    sender = c.text(contacts, "sender", "contacts")
    reply_to = c.text(
        contacts, "reply_to", "contacts", pattern=EMAIL, hint="an e-mail address", required=False
    )
    complaint = c.text(contacts, "complaint", "contacts")

    approval = c.mapping(root.get("approval"), "approval")
    raw_approvers = approval.get("approvers") if approval else None
    approvers: list[str] = []
    approver_ids: dict[str, str] = {}
    if not raw_approvers or not isinstance(raw_approvers, list):
        c.problem(
            "approval.approvers",
            "must be a non-empty list of Airflow user names (or {name, id} pairs where the auth manager's "
            "user id is not the name, as with FAB)",
        )
    else:
        for i, a in enumerate(raw_approvers):
            if isinstance(a, str) and a:
                approvers.append(a)
            elif (
                isinstance(a, dict)
                and set(a) == {"name", "id"}
                and isinstance(a["name"], str)
                and a["name"]
                and isinstance(a["id"], (str, int))
                and str(a["id"])
            ):
                approvers.append(a["name"])
                approver_ids[a["name"]] = str(a["id"])
            else:
                c.problem(
                    f"approval.approvers[{i}]",
                    "must be a user name, or a mapping with exactly `name` (the user name) and `id` (the "
                    "auth manager's user id, e.g. FAB's numeric id from `airflow users list`)",
                )

    sources: list[SourceSpec] = []
    raw_sources = root.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        c.problem("sources", "must be a non-empty list of data sources")
        raw_sources = []
    seen_ids: set[str] = set()
    for i, raw in enumerate(raw_sources):
        path = f"sources[{i}]"
        s = c.mapping(raw, path)
        if not isinstance(raw, dict):
            continue
        c.unknown_keys(s, {"id", "conn_id", "subject_table", "notify", "retain", "classify"}, path)
        sid = c.text(s, "id", path, pattern=SOURCE_ID, hint="lower-case letters, digits and _")
        if sid in seen_ids:
            c.problem(f"{path}.id", f"{sid!r} is used by an earlier source")
        seen_ids.add(sid)
        notify = None
        if s.get("notify") is not None:
            n = c.mapping(s.get("notify"), f"{path}.notify")
            notify = NotifySpec(
                *(
                    c.text(n, k, f"{path}.notify", pattern=IDENTIFIER, hint="a table or column name")
                    for k in ("table", "email_column", "name_column", "link_column")
                )
            )
        retain = []
        raw_retain = s.get("retain") or []
        if not isinstance(raw_retain, list):
            c.problem(f"{path}.retain", "must be a list")
            raw_retain = []
        for j, rr in enumerate(raw_retain):
            rpath = f"{path}.retain[{j}]"
            r = c.mapping(rr, rpath)
            if not isinstance(rr, dict):
                continue
            action = r.get("action", "pseudonymize")
            if action not in RETAIN_ACTIONS:
                c.problem(f"{rpath}.action", f"{action!r} is not one of {', '.join(RETAIN_ACTIONS)}")
            retain.append(
                RetainSpec(
                    table=c.text(r, "table", rpath, pattern=IDENTIFIER, hint="a table name"),
                    law=c.text(r, "law", rpath),
                    years=c.integer(r, "years", rpath),
                    action=action,
                )
            )
        sources.append(
            SourceSpec(
                id=sid,
                conn_id=c.text(s, "conn_id", path),
                subject_table=c.text(s, "subject_table", path, pattern=IDENTIFIER, hint="a table name"),
                notify=notify,
                retain=retain,
                classify=_classify_spec(c, s.get("classify"), f"{path}.classify"),
            )
        )

    object_sources: list[ObjectSourceSpec] = []
    raw_objects = root.get("object_sources") or []
    if not isinstance(raw_objects, list):
        c.problem("object_sources", "must be a list")
        raw_objects = []
    for i, raw in enumerate(raw_objects):
        path = f"object_sources[{i}]"
        o = c.mapping(raw, path)
        if not isinstance(raw, dict):
            continue
        c.unknown_keys(o, {"id", "conn_id", "bucket", "prefix"}, path)
        oid = c.text(o, "id", path, pattern=SOURCE_ID, hint="lower-case letters, digits and _")
        if oid in seen_ids:
            c.problem(f"{path}.id", f"{oid!r} is used by an earlier source")
        seen_ids.add(oid)
        object_sources.append(
            ObjectSourceSpec(
                id=oid,
                conn_id=c.text(o, "conn_id", path),
                bucket=c.text(o, "bucket", path, pattern=BUCKET, hint="an S3 bucket name"),
                prefix=(c.text(o, "prefix", path, required=False) or "").strip("/"),
            )
        )

    b = c.mapping(root.get("backup"), "backup")
    region = c.text(b, "region", "backup")
    assessment = c.text(b, "cross_border_assessment", "backup", required=False) or None
    object_lock = b.get("object_lock", True)
    if not isinstance(object_lock, bool):
        c.problem("backup.object_lock", f"must be true or false, got {object_lock!r}")
    backup = BackupSpec(
        conn_id=c.text(b, "conn_id", "backup"),
        bucket=c.text(
            b, "bucket", "backup", pattern=BUCKET, hint="3-63 lower-case letters, digits, '.' or '-'"
        ),
        prefix=c.text(b, "prefix", "backup").strip("/"),
        region=region,
        retention_days=c.integer(b, "retention_days", "backup"),
        object_lock=bool(object_lock),
        cross_border_assessment=assessment,
    )
    if region and region not in allowed_regions() and not assessment:
        c.problem(
            "backup.region",
            f"{region!r} is outside the allowed regions {allowed_regions()} "
            "(include/policy/regions.yaml); a cross-border transfer needs backup.cross_border_assessment "
            "with the reference of its security assessment",
        )

    n = c.mapping(root.get("notify"), "notify") if root.get("notify") is not None else {}
    c.unknown_keys(
        n,
        {
            "smtp_conn_id",
            "rate_per_minute",
            "answer_base_url",
            "copy_link_days",
            "copy_delivery",
            "copy_attachment_max_kb",
        },
        "notify",
    )
    smtp_conn_id = (
        c.text(n, "smtp_conn_id", "notify") if n.get("smtp_conn_id") is not None else DEFAULT_SMTP_CONN_ID
    )
    copy_delivery = n.get("copy_delivery", "link")
    if copy_delivery not in COPY_DELIVERIES:
        c.problem(
            "notify.copy_delivery",
            f"must be one of {', '.join(COPY_DELIVERIES)}, got {copy_delivery!r} (link: an expiring download "
            "link is e-mailed; attachment: the ZIP is attached, with the link as fallback for large copies)",
        )
    copy_attachment_max_kb = (
        c.integer(n, "copy_attachment_max_kb", "notify") if "copy_attachment_max_kb" in n else 10240
    )
    rate_per_minute = c.integer(n, "rate_per_minute", "notify") if "rate_per_minute" in n else 3000
    answer_base_url = c.text(
        n,
        "answer_base_url",
        "notify",
        pattern=re.compile(r"^https?://\S+$"),
        hint="an http(s) URL",
        required=False,
    )
    copy_link_days = c.integer(n, "copy_link_days", "notify") if "copy_link_days" in n else 14
    successor_name = successor_conn_id = None
    if root.get("successor") is not None:
        succ = c.mapping(root.get("successor"), "successor")
        c.unknown_keys(succ, {"name", "conn_id"}, "successor")
        successor_name = c.text(succ, "name", "successor")
        successor_conn_id = c.text(succ, "conn_id", "successor")

    if c.problems:
        raise ManifestError(source, c.problems)
    return Manifest(
        company_id=company_id,
        name_zh=name_zh,
        name_en=name_en,
        legal_basis=legal_basis,
        closure_date=closure_date,
        operations_email=operations_email,
        sender=sender,
        reply_to=reply_to or operations_email,
        complaint=complaint,
        approvers=list(approvers),
        approver_ids=approver_ids,
        sources=sources,
        backup=backup,
        smtp_conn_id=smtp_conn_id,
        rate_per_minute=rate_per_minute,
        path=source,
        object_sources=object_sources,
        answer_base_url=(answer_base_url or "").rstrip("/") or None,
        copy_link_days=copy_link_days,
        copy_delivery=copy_delivery if copy_delivery in COPY_DELIVERIES else "link",
        copy_attachment_max_kb=copy_attachment_max_kb,
        successor_name=successor_name,
        successor_conn_id=successor_conn_id,
    )


def _classify_spec(c: _Checker, raw: Any, path: str) -> ClassifySpec:
    if raw is None:
        return ClassifySpec()
    spec = ClassifySpec()
    d = c.mapping(raw, path)
    c.unknown_keys(d, {"sample_size", "large_table_rows", "required_tables", "overrides"}, path)
    if "sample_size" in d:
        spec.sample_size = c.integer(d, "sample_size", path, minimum=10)
    if "large_table_rows" in d:
        spec.large_table_rows = c.integer(d, "large_table_rows", path, minimum=1)
    required = d.get("required_tables") or []
    if not isinstance(required, list) or not all(
        isinstance(t, str) and IDENTIFIER.match(t) for t in required
    ):
        c.problem(f"{path}.required_tables", "must be a list of table names")
        required = []
    spec.required_tables = list(required)
    overrides = d.get("overrides") or []
    if not isinstance(overrides, list):
        c.problem(f"{path}.overrides", "must be a list")
        overrides = []
    for j, raw_o in enumerate(overrides):
        opath = f"{path}.overrides[{j}]"
        o = c.mapping(raw_o, opath)
        if not isinstance(raw_o, dict):
            continue
        c.unknown_keys(o, {"table", "column", "categories", "personal", "reason"}, opath)
        categories = o.get("categories")
        personal = o.get("personal", True)
        if personal is False:
            if categories:
                c.problem(opath, "give either categories or personal: false, not both")
            categories = []
        elif (
            not isinstance(categories, list)
            or not categories
            or not all(isinstance(x, str) for x in categories)
        ):
            c.problem(
                f"{opath}.categories", "must be a non-empty list of taxonomy ids (or set personal: false)"
            )
            categories = []
        else:
            known = _taxonomy_ids()
            for cat in categories:
                if cat not in known:
                    c.problem(f"{opath}.categories", f"{cat!r} is not in include/policy/taxonomy.yaml")
        reason = c.text(o, "reason", opath)
        if reason and len(reason.strip()) < 5:
            c.problem(
                f"{opath}.reason", "say why (at least 5 characters); it goes in the ledger and the report"
            )
        spec.overrides.append(
            ColumnOverride(
                table=c.text(
                    o,
                    "table",
                    opath,
                    pattern=re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$"),
                    hint="a table name",
                ),
                column=c.text(o, "column", opath),
                categories=list(categories),
                reason=reason,
            )
        )
    return spec


def _taxonomy_ids() -> set[str]:
    from dereg.classify.taxonomy import load_taxonomy

    return set(load_taxonomy())


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate one manifest file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ManifestError(
            str(path), [f"(document): not valid YAML at {where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    except OSError as exc:
        raise ManifestError(str(path), [f"(document): cannot be read: {exc.strerror}"]) from None
    return parse_manifest(data, str(path))


def manifest_paths(directory: Path | None = None) -> list[Path]:
    directory = directory or config.companies_dir()
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def company_id_from_path(path: Path) -> str:
    """A DAG-safe id from a manifest file name, used when the manifest itself is unreadable."""
    return re.sub(r"[^a-z0-9_]", "_", path.stem.lower()) or "unnamed"


def connection_problems(manifest: Manifest, exists: Callable[[str], bool]) -> list[str]:
    """Problems with the Airflow connections the manifest names, each with its path."""
    return [
        f"{path}: no such connection {conn_id!r} (create it in Airflow: Admin > Connections, "
        f"or an AIRFLOW_CONN_{conn_id.upper()} environment variable)"
        for path, conn_id in manifest.connection_ids()
        if not exists(conn_id)
    ]
