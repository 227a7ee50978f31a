"""A backup restored and verified in parts, so that several workers share a large restore: the
counterpart of `parts.py` for `restore_verify`.

A PostgreSQL backup taken in several parts is restored one part per mapped `restore_backup` task,
on any worker: each part's tables are loaded into one scratch schema shared by the parts of that
backup (`open_scratch_schema`: created once, under an advisory lock of the scratch server, so that
two workers starting at once do not collide; a retried part first drops its own tables), read back
and checked by row count and content hash as a whole restore checks them (`restore_and_verify`
with `tables=` and `scratch_schema=`). The tables are committed, so the finish can see them all:
`restore_verify` then checks what spans the parts, the foreign keys between tables
(`foreign_key_problems`), and drops the schema however it ends (`drop_scratch_schema`). A part
that fails drops its own tables at once. The scratch tables hold decrypted rows: the schema's
name says what it is (`dereg_scratch_...`), and only the finish or a retry of the same run's
parts touches it.

Without a PostgreSQL scratch server (and for other databases' backups) each part is restored into
its own scratch SQLite file, removed when the part ends; nothing spans the parts but the check
that every table was verified. Only names, ids, counts and error classes leave this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dereg.backup import catalog
from dereg.backup.codec import READABLE_VERSIONS
from dereg.backup.pgcopy import ScratchUnavailable
from dereg.backup.restore import (
    RestoreReport,
    _get,
    _wrapped_key,
    authenticate_manifest,
    check_manifest_shape,
    compare_with_catalog,
    restore_and_verify,
)
from dereg.connections import S3Location
from dereg.dialects import dialect_for, normalize_url
from dereg.errors import BackupError, DeregError

SCHEMA_PREFIX = "dereg_scratch_"


def scratch_schema_name(backup_id: str, run_id: str) -> str:
    """The scratch schema shared by the parts of `backup_id` restored in run `run_id` (a closure's
    or a drill's): the same in every worker, different for every backup and run."""
    return SCHEMA_PREFIX + hashlib.sha256(f"{backup_id}|{run_id}".encode()).hexdigest()[:20]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url), hide_parameters=True, poolclass=sa.pool.NullPool)


def _locked(conn, schema: str) -> None:
    # one lock per schema name for the transaction: creating and dropping never interleave
    dialect_for(conn).lock_name(conn, schema)


def open_scratch_schema(url: str, schema: str, tables: list[str]) -> None:
    """Create `schema` on the scratch server unless a sibling part did, and drop `tables` (this
    part's) from it, left by an earlier try. Raises `ScratchUnavailable` when the server cannot be
    used (the part then restores into scratch SQLite, as a whole restore would)."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            _locked(conn, schema)
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema)}")
            for name in tables:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_quote(schema)}.{_quote(name)}")
    except sa.exc.SQLAlchemyError as exc:
        raise ScratchUnavailable(f"{type(getattr(exc, 'orig', None) or exc).__name__}") from None
    finally:
        engine.dispose()


def drop_tables(url: str, schema: str, tables: list[str]) -> None:
    """Drop this part's `tables` from the shared schema (a part that failed leaves none of its rows)."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            for name in tables:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_quote(schema)}.{_quote(name)}")
    finally:
        engine.dispose()


def drop_scratch_schema(url: str, schema: str) -> None:
    """Drop the shared scratch schema and every table in it."""
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            _locked(conn, schema)
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")
    finally:
        engine.dispose()


def tables_present(url: str, schema: str, tables: list[str]) -> set[str]:
    """Which of `tables` are in `schema` on the scratch server."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            found = conn.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
            ).scalars()
            return set(found) & set(tables)
    finally:
        engine.dispose()


def read_checked_manifest(backup_id: str, *, location: S3Location, keyring, store) -> dict[str, Any]:
    """The manifest of `backup_id`, checked as a restore checks it (authenticated under the data
    key, equal to the catalog's record, names fit for SQL) before anything of it is used."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = location.client()
    record = catalog.get(store, backup_id)
    manifest_key = record["manifest_key"] if record else location.key(backup_id, "manifest.json")
    try:
        manifest = json.loads(_get(client, location, manifest_key))
    except (ClientError, BotoCoreError, ValueError) as exc:
        raise BackupError(
            f"the manifest {manifest_key} of backup {backup_id} cannot be read from {location.describe()} "
            f"({type(exc).__name__})"
        ) from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != "dereg-backup"
        or manifest.get("version") not in READABLE_VERSIONS
        or manifest.get("backup_id") != backup_id
    ):
        raise BackupError(f"{manifest_key} is not the manifest of backup {backup_id} this release reads")
    kek_id, wrapped = _wrapped_key(backup_id, store, client, location)
    data_key = keyring.unwrap_data_key(kek_id, wrapped, what=f"the data key of backup {backup_id}")
    authenticate_manifest(manifest, data_key, manifest_key=manifest_key)
    if record is not None:
        compare_with_catalog(manifest, record, manifest_key=manifest_key)
    check_manifest_shape(manifest, manifest_key=manifest_key)
    return manifest


def restorable_tables(manifest: dict) -> list[str]:
    """The tables a restore loads and verifies (a partitioned table's rows are its partitions')."""
    return [n for n in manifest["table_order"] if not manifest["tables"][n].get("partitioned")]


def _referenced(manifest: dict, child: str, ref_table: str, present: set[str]) -> str | None:
    """The manifest's name of the table a foreign key of `child` refers to (the manifest records
    the referred table by its bare name: its schema is taken to be the child's, else the default)."""
    schema = manifest["tables"][child].get("schema")
    for candidate in ([f"{schema}.{ref_table}"] if schema else []) + [ref_table]:
        if candidate in present:
            return candidate
    return None


def foreign_key_problems(
    url: str, schema: str, manifest: dict, present: set[str]
) -> tuple[list[str], int, int]:
    """Check every foreign key of the manifest between tables restored into `schema`: each row
    whose key columns are all set must find its referenced row (MATCH SIMPLE, as PostgreSQL
    checks it). Returns (problems, keys checked, keys not checked: their referenced table is not
    among the restored ones, e.g. a partitioned table). Problems name table, columns and a count."""
    problems: list[str] = []
    checked = skipped = 0
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            for child in sorted(present):
                for fk in manifest["tables"][child].get("foreign_keys") or []:
                    columns, ref_columns = fk.get("columns") or [], fk.get("ref_columns") or []
                    parent = _referenced(manifest, child, str(fk.get("ref_table") or ""), present)
                    if parent is None or not columns or len(columns) != len(ref_columns):
                        skipped += 1
                        continue
                    orphans = _orphans(conn, schema, child, parent, columns, ref_columns)
                    checked += 1
                    if orphans is None:
                        problems.append(
                            f"{child}: the foreign key ({', '.join(columns)}) -> {parent} cannot be checked "
                            "in the scratch schema (its columns do not compare)"
                        )
                    elif orphans:
                        problems.append(
                            f"{child}: {orphans} row(s) refer through ({', '.join(columns)}) to no row of "
                            f"{parent}: the parts of the backup do not fit together"
                        )
    finally:
        engine.dispose()
    return problems, checked, skipped


def _orphans(conn, schema: str, child: str, parent: str, columns: list, ref_columns: list) -> int | None:
    s = _quote(schema)
    for cast in ("", "::text"):  # a type the scratch server does not have is restored as text
        match = " AND ".join(
            f"p.{_quote(r)}{cast} = c.{_quote(col)}{cast}"
            for col, r in zip(columns, ref_columns, strict=True)
        )
        sql = (
            f"SELECT count(*) FROM {s}.{_quote(child)} c WHERE "
            + " AND ".join(f"c.{_quote(col)} IS NOT NULL" for col in columns)
            + f" AND NOT EXISTS (SELECT 1 FROM {s}.{_quote(parent)} p WHERE {match})"
        )
        savepoint = conn.begin_nested()
        try:
            found = int(conn.exec_driver_sql(sql).scalar())
        except sa.exc.DBAPIError:
            savepoint.rollback()
            continue
        savepoint.commit()
        return found
    return None


def shared_scratch(url: str | None) -> bool:
    """Whether the parts of a backup are restored into one schema on `url` (a PostgreSQL server)."""
    return bool(url) and dialect_for(url).copy_text


@dataclass
class PartRestore:
    """One part restored and verified by `restore_part`."""

    report: RestoreReport
    #: the tables it verified (what the finish checks every table of the manifest against)
    verified: list[str]
    #: whether they are all in the backup's shared scratch schema (the finish checks the foreign
    #: keys across the parts there)
    shared: bool


def restore_part(
    backup_id: str,
    tables: list[str],
    *,
    run_id: str,
    scratch_url: str | None,
    location: S3Location,
    keyring,
    store,
    progress,
    log,
) -> PartRestore:
    """Restore and verify `tables` of `backup_id` (one part of it), each by row count and content
    hash, into the scratch schema the parts of that backup share in run `run_id` on a PostgreSQL
    scratch server (else into a scratch SQLite file of its own, or when the server cannot be
    used). A part that does not verify, or raises, leaves none of its tables in the shared schema;
    the finish (`finish_parts`) drops the schema however the parts end. Raises as
    `restore_and_verify` does."""
    schema = None
    if shared_scratch(scratch_url):
        name = scratch_schema_name(backup_id, run_id)
        try:
            open_scratch_schema(scratch_url, name, tables)
            schema = name
        except ScratchUnavailable as exc:
            log.warning(
                "No shared scratch schema for backup %s (%s): this part restores on its own", backup_id, exc
            )
    ok = False
    try:
        report = restore_and_verify(
            backup_id,
            location=location,
            keyring=keyring,
            store=store,
            scratch_url=scratch_url,
            progress=progress,
            tables=tables,
            scratch_schema=schema,
        )
        ok = report.ok
        verified = sorted(report.tables)
        shared = schema is not None and tables_present(scratch_url, schema, verified) == set(verified)
    finally:
        if schema is not None and not ok:
            try:
                drop_tables(scratch_url, schema, tables)
            except sa.exc.SQLAlchemyError as exc:  # the finish drops the whole schema all the same
                log.warning(
                    "This part's tables stay in %s until the backup's finishing task drops it (%s)",
                    schema,
                    type(exc).__name__,
                )
    return PartRestore(report=report, verified=verified, shared=shared)


def finish_parts(
    backup_id: str,
    outcomes: list[dict | None],
    *,
    run_id: str,
    scratch_url: str | None,
    location: S3Location,
    keyring,
    store,
    missing: str,
    failed,
    part_task: str = "restore_backup",
) -> tuple[list[str], dict[str, Any]]:
    """Check what spans the parts of `backup_id` restored in run `run_id` (`outcomes`: each part's
    recorded result, in part order, None where it recorded none): every part verified, every table
    of the (checked) manifest verified by exactly the parts' listing, the foreign keys between the
    parts' tables in the shared scratch schema; then drop that schema, however it ends. Returns the
    problems found (empty: the backup restores) and the figures to record (foreign keys checked).
    `missing`: the sentence for a part without a result; `failed(i, count, outcome)`: the lines
    for a part that did not verify; `part_task`: the task that restores a part (what to clear).
    Raises nothing the caller must clean up after."""
    count = len(outcomes)
    problems: list[str] = []
    figures: dict[str, Any] = {}
    schema = scratch_schema_name(backup_id, run_id)
    try:
        for i, outcome in enumerate(outcomes):
            if outcome is None:
                problems.append(f"part {i + 1}/{count} {missing}")
            elif outcome.get("ok") is not True:
                problems += failed(i, count, outcome)
        if not problems:
            checked = read_checked_manifest(backup_id, location=location, keyring=keyring, store=store)
            expected = set(restorable_tables(checked))
            verified = set().union(*(o.get("verified") or [] for o in outcomes))
            if verified != expected:
                unverified = sorted(expected - verified) + sorted(verified - expected)
                problems.append(
                    f"{len(unverified)} table(s) verified by no part, or by a part of another listing: "
                    f"{', '.join(unverified[:5])}"
                )
            elif shared_scratch(scratch_url) and all(o.get("shared_schema") for o in outcomes):
                present = tables_present(scratch_url, schema, sorted(verified))
                if present != verified:
                    problems.append(
                        f"{len(verified - present)} table(s) are no longer in the scratch schema (an earlier "
                        f"finish dropped it): clear every {part_task} task of this backup, then this one"
                    )
                else:
                    found, keys, skipped = foreign_key_problems(scratch_url, schema, checked, present)
                    problems += found
                    figures.update(foreign_keys_checked=keys, foreign_keys_not_checked=skipped)
            else:
                figures["foreign_keys_checked"] = 0  # the parts were restored apart (scratch SQLite)
    except DeregError as exc:
        problems.append(str(exc))
    finally:
        if shared_scratch(scratch_url):
            try:
                drop_scratch_schema(scratch_url, schema)
            except Exception as exc:  # noqa: BLE001 - said in the problems: rows are left on the server
                problems.append(
                    f"the scratch schema {schema} on the scratch server could not be dropped "
                    f"({type(getattr(exc, 'orig', None) or exc).__name__}): it holds restored rows; "
                    "retry this task, or drop it by hand"
                )
    return problems, figures
