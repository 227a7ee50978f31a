"""The closure's preflight: everything a closure needs, checked before it touches anything, with
every problem reported at once and each named by its place in the manifest.

What is checked: every connection the manifest names exists and is configured as its use needs
(type, host, database, bucket: `dereg.connections.ConnectionProblem`); the run has a reason; the
keyring loads; each source database answers and has the tables the manifest names; the backup
store answers and accepts the credentials; the SMTP relay accepts a session (TLS, login). A server
that does not answer is "unreachable"; a connection that is wrong says what is wrong instead.

The functions take the connection builders as arguments (`dereg.connectors.Connectors`, by default
those of `dereg.connections`), so they are tested without Airflow; `PreflightOperator` only calls
`preflight_problems` and `PreflightFailed`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dereg.connections import ConnectionProblem
from dereg.connectors import Connectors
from dereg.errors import DeregError

MIN_REASON = 5  # characters: the reason goes in the ledger, so "x" is not one


class PreflightFailed(DeregError):
    """Preflight found problems; nothing was done."""

    def __init__(self, company_id: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"preflight of company {company_id} found {len(problems)} problem(s); nothing was done:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def check_reason(reason: str) -> list[str]:
    if len((reason or "").strip()) < MIN_REASON:
        return [
            f"params.reason: say why this closure runs (at least {MIN_REASON} characters); it goes in the ledger"
        ]
    return []


def check_keyring(load: Callable[[], Any]) -> list[str]:
    try:
        load()
    except DeregError as exc:
        return [f"keyring: {exc}"]
    return []


def check_notify(i: int, source, *, dry_run: bool) -> list[str]:
    """A real run knows how to reach the customers of every source (or is told none can be)."""
    if source.notify is not None or dry_run:
        return []
    from dereg.manifest.problems import NOTIFY_SHAPES

    return [
        f"sources[{i}].notify: is missing, so no customer of {source.id} would be told before erasure; "
        f"name how to reach them: {NOTIFY_SHAPES}"
    ]


def _notify_columns(i: int, source, tables: set[str], columns_of: Callable[[str], set[str]]) -> list[str]:
    """The notify table (a table or a view) and every column `notify` names exist."""
    n, path = source.notify, f"sources[{i}].notify"
    table = source.notify_table
    if table not in tables:
        return [f"{path}.table: table or view {table!r} does not exist in {source.id}"]
    wanted = [
        (table, "email_column", n.email_column),
        (table, "name_column", n.name_column),
        (source.subject_table, "link_column", n.link_column),
        (table, "key_column", n.key_column),
        (table, "subject_column", n.subject_column),
    ]
    problems = []
    for where, field, column in wanted:
        if column and where in tables and column not in columns_of(where):
            problems.append(
                f"{path}.{field}: {where} has no column {column!r}; name one of its columns: "
                + ", ".join(sorted(columns_of(where))[:30])
            )
    return problems


def check_source(i: int, source, engine_for: Callable[[str], Any]) -> list[str]:
    """The source database answers, and has the subject, notify and retained tables, and the
    columns `notify` names."""
    import sqlalchemy as sa

    where = f"sources[{i}] ({source.id})"
    try:
        engine = engine_for(source.conn_id)
    except ConnectionProblem as exc:
        return [f"sources[{i}].conn_id: {exc}"]
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names())
            views = set(inspector.get_view_names())
            notify_columns = (
                _notify_columns(
                    i, source, tables | views, lambda t: {c["name"] for c in inspector.get_columns(t)}
                )
                if source.reaches_customers
                else []
            )
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
        return [
            f"{where}: database of connection {source.conn_id!r} is unreachable "
            f"({type(exc).__name__}); check host, port and credentials of the connection"
        ]
    finally:
        engine.dispose()
    problems = []
    if source.subject_table not in tables:
        problems.append(
            f"sources[{i}].subject_table: table {source.subject_table!r} does not exist in {source.id}"
        )
    problems += notify_columns
    for j, rule in enumerate(source.retain):
        if rule.table not in tables:
            problems.append(
                f"sources[{i}].retain[{j}].table: table {rule.table!r} does not exist in {source.id}"
            )
    return problems


def check_backup_store(spec, location_for: Callable[[str, Any], Any]) -> list[str]:
    """The backup store answers and accepts the connection's credentials."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        location = location_for(spec.conn_id, spec)
    except ConnectionProblem as exc:
        return [f"backup.conn_id: {exc}"]
    try:
        location.client().list_buckets()
    except (BotoCoreError, ClientError) as exc:
        return [
            f"backup.conn_id: the S3 store {location.endpoint_url or 'AWS'} of connection "
            f"{spec.conn_id!r} is unreachable or refuses the credentials ({type(exc).__name__})"
        ]
    return []


def check_object_source(i: int, source, client_for: Callable[..., Any]) -> list[str]:
    """The object source's connection is an S3 connection that can make a client."""
    try:
        client_for(source)
    except ConnectionProblem as exc:
        return [f"object_sources[{i}].conn_id: {exc}"]
    return []


def check_smtp(conn_id: str, hook_for: Callable[[str], Any]) -> list[str]:
    """Open the session the notices will use (TLS, certificate, login), then close it."""
    from dereg.errors import NotifyError

    try:
        hook = hook_for(conn_id)
    except ConnectionProblem as exc:
        return [f"notify.smtp_conn_id: {exc}"]
    try:
        hook.open()
    except NotifyError as exc:
        return [f"notify.smtp_conn_id: {exc}"]
    finally:
        hook.close()
    return []


def check_successor(conn_id: str, url_for: Callable[[str], Any]) -> list[str]:
    """The successor's database connection is configured (it is written to only on transfers)."""
    try:
        url_for(conn_id)
    except ConnectionProblem as exc:
        return [f"successor.conn_id: {exc}"]
    return []


def preflight_problems(
    manifest,
    reason: str,
    *,
    connectors: Connectors | None = None,
    load_keyring: Callable[[], Any] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Every problem that would stop this closure, each with its place in the manifest (a dry run
    may leave out how to reach the customers: it sends nothing)."""
    from dereg.manifest import connection_problems

    c = connectors or Connectors()
    if load_keyring is None:
        from dereg.keys import Keyring

        load_keyring = Keyring.load
    m = manifest
    problems = connection_problems(m, c.exists)
    problems += check_reason(reason)
    problems += check_keyring(load_keyring)
    missing = {conn_id for _, conn_id in m.connection_ids() if not c.exists(conn_id)}
    for i, source in enumerate(m.sources):
        problems += check_notify(i, source, dry_run=dry_run)
        if source.conn_id not in missing:
            problems += check_source(i, source, c.engine)
    for i, source in enumerate(m.object_sources):
        if source.conn_id not in missing:
            problems += check_object_source(i, source, c.object_client)
    if m.backup.conn_id not in missing:
        problems += check_backup_store(m.backup, c.backup_location)
    if m.smtp_conn_id not in missing:
        problems += check_smtp(m.smtp_conn_id, c.smtp_hook)
    if m.successor_conn_id and m.successor_conn_id not in missing:
        problems += check_successor(m.successor_conn_id, c.database_url)
    return problems
