"""The `plan`, `erase`, `purge` and `verify_erasure` stages over every source of a manifest.

`plan_sources` builds each source's erasure plan from its inventory and classification and stores
it; the other three take the plans as read once by the task (`RunArtifacts.plans`), never re-read
per source, so the plans erase runs are the plans its gate checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from dereg.classify.engine import full_scan_hits
from dereg.connectors import Connectors
from dereg.erase.execute import KeptRowsAtRisk, execute_plan, kept_row_risks, referenced_values
from dereg.erase.gate import combined_plan_hash
from dereg.erase.objects import ObjectErasurePlan, build_object_plan, erase_objects, verify_objects
from dereg.erase.plan import ErasurePlan, RetainRule, TableAction, build_plan
from dereg.erase.purge import purge
from dereg.erase.selection import count_selected, reflect
from dereg.erase.verify import verify_erasure
from dereg.errors import BackupError, ErasureError
from dereg.evidence.run_artifacts import RunArtifacts
from dereg.inventory.sql import inventory_source
from dereg.redact import database_error, is_database_error

ERASE_BATCH = 5000  # rows per transaction when deleting or pseudonymizing in batches

Plans = Mapping[str, ErasurePlan | ObjectErasurePlan]


def plan_sources(
    manifest, artifacts: RunArtifacts, *, log, connectors: Connectors | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Build and store the erasure plan of every source; returns the combined hash the approver
    approves, each source's hash and each plan's summary.

    With `connectors`, the rows each linked action takes are counted on the source with the
    selection erase will run (`count_selected`). Personal data no link ties to the subjects and the
    manifest has not decided stops a real run here (naming every table and how to decide it); a
    `dry_run` plans it as kept and lists it under `undecided`."""
    hashes, summaries = {}, {}
    for source in manifest.sources:
        plan = _sql_plan(manifest, source, artifacts, dry_run=dry_run)
        if connectors is not None:
            with connectors.database(source.conn_id) as engine:
                count_selected(engine, plan, dry_run=dry_run)
        artifacts.put_plan(source.id, plan)
        for action in plan.tables:
            log.info(
                "  %s.%s: %s %d of %d rows (%s) %s",
                source.id,
                action.table,
                action.action,
                action.rows,
                action.rows_total,
                action.scope,
                ",".join(action.columns),
            )
        for item in plan.undecided:
            log.warning(
                "  %s.%s: personal columns %s with no link to the subjects and no decision (%d rows)",
                source.id,
                item["table"],
                ", ".join(item["columns"]),
                item["rows"],
            )
        hashes[source.id], summaries[source.id] = plan.plan_hash, plan.summary()
    for source in manifest.object_sources:
        plan = build_object_plan(
            manifest.company_id, artifacts.object_inventory(source.id), artifacts.classification(source.id)
        )
        artifacts.put_plan(source.id, plan)
        log.info(
            "  %s (objects): %s every version and delete marker of %d objects (%d bytes); %d folder/type "
            "group(s) with personal data",
            source.id,
            plan.action,
            plan.objects,
            plan.bytes,
            len(plan.personal_groups),
        )
        hashes[source.id], summaries[source.id] = plan.plan_hash, plan.summary()
    plan_hash = combined_plan_hash(hashes)
    log.info("Erasure plan hash %s", plan_hash)
    return {"plan_hash": plan_hash, "source_plan_hashes": hashes, "sources": summaries}


def not_personal_columns(source) -> set[tuple[str, str]]:
    """(table, column) the manifest's overrides say are not personal (`personal: false` or no
    categories): the plan leaves them, so the final scan must too."""
    return {(o.table, o.column) for o in source.classify.overrides if not o.personal or not o.categories}


def _sql_plan(manifest, source, artifacts: RunArtifacts, *, dry_run: bool = False) -> ErasurePlan:
    inventory = artifacts.inventory(source.id)
    classification = artifacts.classification(source.id)
    # every schema is planned (tables are schema-qualified); a table the backup does not hold is
    # refused by erase (`check_against_backup`), so nothing outside the backup is erased
    plan = build_plan(
        company_id=manifest.company_id,
        inventory=inventory,
        classification=classification,
        subject_table=source.subject_table,
        retain=[RetainRule(table=r.table, action=r.action, law=r.law, years=r.years) for r in source.retain],
        keep_unreadable={u.table: u.reason for u in source.classify.keep_unreadable},
        decisions={d.table: (d.action, d.reason) for d in source.decisions},
        allow_undecided=dry_run,
    )
    problems = override_problems(plan, inventory, not_personal_columns(source))
    if problems:
        raise ErasureError(
            f"source {source.id}: the manifest's classify.overrides do not match the plan:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nFix the overrides, then classify and plan again (verification honours them, so a "
            "wrong one would only show after the erase)."
        )
    return plan


def override_problems(plan: ErasurePlan, inventory, not_personal: set[tuple[str, str]]) -> list[str]:
    """What verification would reject because of an override, caught before anything is erased:
    an override naming a table or column the source does not have (verification would then apply
    it to nothing, or the manifest meant another column)."""
    columns = {t.qualified_name: {c.name for c in t.columns} for t in inventory.tables}
    problems = []
    for table, column in sorted(not_personal):
        if table not in columns:
            problems.append(f"{table}.{column}: the source has no table {table}")
        elif column not in columns[table]:
            problems.append(f"{table}.{column}: table {table} has no column {column}")
    return problems


#: source id -> table (as the plan shows it) -> what the backup recorded of it: {"rows", "sha256"}
BackedUp = Mapping[str, Mapping[str, Mapping[str, Any]]]


def backed_up_tables(store, backups: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Source id -> {table -> {"rows", "sha256"}} of the run's complete backups
    (`RunArtifacts.backups`), read from the catalog (which the backup wrote only once every object
    was stored); a backup that is not complete holds nothing."""
    from dereg.backup import catalog

    found: dict[str, dict[str, dict[str, Any]]] = {}
    for source_id, info in backups.items():
        row = catalog.get(store, info.get("backup_id", ""))
        if row is None or row.get("status") != "complete":
            found[source_id] = {}
            continue
        tables = json.loads(row.get("tables_json") or "{}")
        found[source_id] = {
            name: {"rows": int(t.get("rows", -1)), "sha256": t.get("sha256")} for name, t in tables.items()
        }
    return found


def backup_problems(plan: ErasurePlan, backed_up: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why `plan` may not run against what the backup holds: every table it deletes or
    pseudonymizes must be in the backup, with the rows the plan counted and a content hash."""
    problems = []
    for action in plan.tables:
        if action.action == "keep":
            continue
        held = backed_up.get(action.table)
        if held is None:
            problems.append(f"{action.table}: not in the backup, so erasing it would lose its rows for good")
        elif held.get("rows") != action.rows_total:
            problems.append(
                f"{action.table}: the plan counted {action.rows_total} rows but the backup holds "
                f"{held.get('rows')} (the table changed between plan and backup)"
            )
        elif not held.get("sha256"):
            problems.append(f"{action.table}: the backup records no content hash, so it cannot be compared")
    return problems


def current_rows(engine, plan: ErasurePlan) -> dict[str, int]:
    """Rows now in each table `plan` deletes or pseudonymizes (a missing table: 0)."""
    counts = {}
    with engine.connect() as conn:
        for action in plan.tables:
            if action.action == "keep":
                continue
            schema, name = action.ident
            try:
                with conn.begin_nested():
                    table = sa.table(name, schema=schema)
                    counts[action.table] = int(
                        conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                    )
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise
                counts[action.table] = 0  # gone or unreadable: not the planned rows, so refused
    return counts


def change_problems(plan: ErasurePlan, now: Mapping[str, int], *, resumed: bool) -> list[str]:
    """Why `plan` may not run on the source as it is `now`: a table holds other than the planned
    (and backed-up) rows. On a resumed erase, delete tables may hold fewer (the earlier try's work)."""
    problems = []
    for action in plan.tables:
        if action.action == "keep" or action.table not in now:
            continue
        rows = now[action.table]
        fewer_ok = resumed and action.action == "delete"
        if rows > action.rows_total or (rows < action.rows_total and not fewer_ok):
            problems.append(
                f"{action.table}: {rows} rows now, {action.rows_total} backed up and planned "
                "(the source changed since the backup)"
            )
    return problems


def compared_tables(
    plan: ErasurePlan, backed_up: Mapping[str, Mapping[str, Any]], now: Mapping[str, int], *, resumed: bool
) -> list[TableAction]:
    """The tables whose content is compared with the backup: every table `plan` deletes or
    pseudonymizes; on a `resumed` try only the delete tables that still hold every backed-up row
    (the earlier try cannot have touched them, as a delete only removes rows): the others hold that
    try's own work (fewer rows, or tokens), so only their counts are checked."""
    return [
        a
        for a in plan.tables
        if a.action != "keep"
        and (not resumed or (a.action == "delete" and now.get(a.table) == backed_up[a.table]["rows"]))
    ]


def content_problems(
    engine, plan: ErasurePlan, touched: list[TableAction], backed_up: Mapping[str, Mapping[str, Any]]
) -> tuple[list[str], dict[str, str]]:
    """Whether each table of `touched` (actions of `plan`) holds, byte for byte, what the backup
    took: its content hash is computed again, by the backup's own reader and encoding
    (`backup.archive.table_digests`, streamed, one snapshot on PostgreSQL), and compared with the
    one the backup recorded. Returns the problems (tables named, never a value) and the hashes
    (table -> sha256) for the check under the TRUNCATE lock. The count check comes first: this
    one reads every touched table in full, so it runs only when the counts already match."""
    from dereg.backup.archive import table_digests

    if not touched:
        return [], {}
    try:
        now = table_digests(engine, [a.ident for a in touched])
    except BackupError as exc:  # the fast reader's error: table and driver code, never the message
        raise ErasureError(
            f"erase of {plan.source_id} could not compare the source with its backup: "
            f"{str(exc).split(';')[0]}. Nothing was erased; fix the cause and run the task again."
        ) from None
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise ErasureError(
            f"erase of {plan.source_id} could not compare the source with its backup: reading the "
            f"tables failed ({database_error(exc)}). Nothing was erased; fix the cause and run the task again."
        ) from None
    problems, expected = [], {}
    for action in touched:
        expected[action.table] = backed_up[action.table]["sha256"]
        rows, digest = now[action.ident]
        if digest != expected[action.table]:
            problems.append(
                f"{action.table}: {rows} rows now, as many as backed up, but their content differs from the "
                "backup (content hash); rows were changed, or some deleted and others added, since the backup"
            )
    return problems, expected


def rows_affected(plan: ErasurePlan, before: Mapping[str, int], changed: Mapping[str, int], after) -> dict:
    """Rows the run erased per table, over every try, from the table's rows at plan time
    (`rows_total`, which the backup holds) and now (`after`): for a delete, the rows gone; for a
    pseudonymization, the rows selected, less any kept row that went missing (none may)."""
    affected = {}
    for action in plan.tables:
        now = after.get(action.table, 0)
        if action.action == "delete":
            affected[action.table] = action.rows_total - now
        elif action.action == "pseudonymize":
            affected[action.table] = action.rows - (action.rows_total - now)
    return affected


def mismatched_counts(plan: ErasurePlan, affected: Mapping[str, int]) -> list[str]:
    """Tables whose rows affected differ from the plan's count (the certificate may not say so)."""
    return [
        f"{a.table}: plan {a.rows}, affected {affected.get(a.table)}"
        for a in plan.tables
        if a.action != "keep" and affected.get(a.table) != a.rows
    ]


def erase_preview(plans: Plans, manifest=None, connectors: Connectors | None = None) -> dict[str, Any]:
    """What a dry run reports instead of erasing: each plan's summary. With the manifest and
    `connectors`, the check a real erase makes before it changes anything runs too (read only):
    rows that stay referring by foreign key to rows the plan deletes fail the dry run as they
    would fail the erase (`KeptRowsAtRisk`)."""
    if manifest is not None and connectors is not None:
        for source in manifest.sources:
            with connectors.database(source.conn_id) as engine:
                risks = kept_row_risks(engine, plans[source.id])
            if risks:
                raise KeptRowsAtRisk(source.id, risks)
    return {"would": {sid: p.summary() for sid, p in plans.items()}}


def subject_keys(engine, plan: ErasurePlan) -> dict[str, Any] | None:
    """The subject table's primary key values (references, not personal data), for verification
    to follow links by key after the erase; None when the table has no primary key or its key
    values are not plain numbers or text."""
    action = plan.action(plan.subject_table)
    if not action.key:
        return None
    metadata = sa.MetaData()
    with engine.connect() as conn:
        table = reflect(conn, metadata, *action.ident)
        cols = [table.c[k] for k in action.key]
        values = [list(r) for r in conn.execute(sa.select(*cols).order_by(*cols))]
    if any(not isinstance(v, int | str) or isinstance(v, bool) for row in values for v in row):
        return None
    return {"table": plan.subject_table, "columns": list(action.key), "values": values}


def erase_keys(engine, plan: ErasurePlan) -> dict[str, Any]:
    """What erase records before it changes anything (references, never personal data): the
    subject table's key values (`subject_keys`: "table", "columns", "values"; absent without a
    primary key) and, under "referenced", the rows the subjects refer to that the plan deletes
    (`referenced_values`), so a retry after the subjects are gone still finds them."""
    return {**(subject_keys(engine, plan) or {}), "referenced": referenced_values(engine, plan)}


def erase_sources(
    manifest,
    plans: Plans,
    *,
    connectors: Connectors,
    pseudonym_key: bytes,
    backed_up: BackedUp,
    resumed: bool,
    log,
    progress,
    on_checked: Callable[[dict[str, dict[str, int]]], None] | None = None,
    record_subject_keys: Callable[[str, dict], None] | None = None,
    recorded_keys: Callable[[str], dict | None] | None = None,
) -> dict[str, Any]:
    """Run each source's approved plan: rows deleted or pseudonymized, and every object version and
    delete marker deleted under the prefixes planned for deletion (locked versions are counted).

    Only what was backed up and planned is erased. Before anything changes, for every source: each
    touched table must be in its backup (`backed_up`: source -> table -> {"rows", "sha256"}, the
    catalog's record, see `backed_up_tables`) with the planned rows and hold those rows now (fewer
    on a `resumed` try: one whose earlier try passed these checks, which `on_checked(rows per
    source and table)` records before the first change); then, the cheap count check passed, each
    touched table's content hash is computed again exactly as the backup computed it and must equal
    the backup's (a row deleted and another added, or a row updated, since the backup). Any
    difference refuses the whole erase, nothing changed. On PostgreSQL the tables emptied by
    TRUNCATE are checked again, counts and hashes, under the TRUNCATE's ACCESS EXCLUSIVE lock, in
    its transaction: nothing can change them between that check and their erasure.

    The window that remains: a table erased in batches (every table on MariaDB/MySQL and SQLite;
    on PostgreSQL the pseudonymized tables and deleted tables a kept table refers to) can still be
    changed between the hash check and its batches by a writer that keeps the row count (an update,
    or a delete and an insert); rows added in that window stop the delete (`RowsAppeared`). Stop
    the writers before erase. A `resumed` try compares hashes only where the earlier try cannot
    have changed the table (`compared_tables`): a delete table holding fewer rows than backed up,
    or a pseudonymized table, has only its count checked. Rows affected must equal the plan's, or
    the stage fails."""
    problems: list[str] = []
    before: dict[str, dict[str, int]] = {}
    for source in manifest.sources:
        plan = plans[source.id]
        problems += [f"{source.id}: {p}" for p in backup_problems(plan, backed_up.get(source.id, {}))]
        with connectors.database(source.conn_id) as engine:
            before[source.id] = current_rows(engine, plan)
            risks = kept_row_risks(engine, plan)
        if risks:
            raise KeptRowsAtRisk(source.id, risks)
        problems += [f"{source.id}: {p}" for p in change_problems(plan, before[source.id], resumed=resumed)]
    if problems:
        raise ErasureError(
            f"erase of {manifest.company_id} refuses: it erases only what was backed up and planned, and "
            "the source differs:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nNothing was erased. Run inventory, plan and backup again, and have the new plan approved."
        )
    digests: dict[str, dict[str, str]] = {}
    for source in manifest.sources:
        plan, held = plans[source.id], backed_up.get(source.id, {})
        compared = compared_tables(plan, held, before[source.id], resumed=resumed)
        with connectors.database(source.conn_id) as engine:
            found, digests[source.id] = content_problems(engine, plan, compared, held)
        problems += [f"{source.id}: {p}" for p in found]
    if problems:
        raise ErasureError(
            f"erase of {manifest.company_id} refuses: it erases only what was backed up, and these "
            "tables hold other rows than the backup took:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nNothing was erased. Take a new backup: stop the source's writers, then run the closure "
            "again from the backup stage in a new run (a retry of this run's backup task reuses the "
            "backup it took), with inventory and plan before it and the new plan approved."
        )
    keys: dict[str, dict[str, Any]] = {}
    for source in manifest.sources:
        recorded = recorded_keys(source.id) if (resumed and recorded_keys is not None) else None
        if recorded is None:
            with connectors.database(source.conn_id) as engine:
                recorded = erase_keys(engine, plans[source.id])
            if record_subject_keys is not None:
                record_subject_keys(source.id, recorded)
        keys[source.id] = recorded
    if on_checked is not None:
        on_checked(before)
    done, affected = {}, {}
    for source in manifest.sources:
        plan = plans[source.id]
        with connectors.database(source.conn_id) as engine:
            done[source.id] = execute_plan(
                engine,
                plan,
                pseudonym_key=pseudonym_key,
                batch_size=ERASE_BATCH,
                progress=progress,
                truncate_whole_tables=True,
                expected_rows=before[source.id],
                expected_digests=digests[source.id],
                referenced=keys[source.id].get("referenced"),
            )
            after = current_rows(engine, plan)
        affected[source.id] = rows_affected(plan, before[source.id], done[source.id], after)
        problems += [f"{source.id}: {p}" for p in mismatched_counts(plan, affected[source.id])]
    if problems:
        raise ErasureError(
            f"erase of {manifest.company_id}: rows affected differ from the approved plan:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + "\nNo certificate can be issued for this run; investigate, then run the erase task again."
        )
    objects = {}
    for source in manifest.object_sources:
        plan = plans[source.id]
        if plan.action != "delete":
            continue
        result = erase_objects(connectors.object_client(source), plan.bucket, plan.prefix, progress=progress)
        objects[source.id] = result.to_dict()
        if result.locked:
            log.warning(
                "%s: %d object version(s) are locked (Object Lock until %s, %d legal hold(s)) and stay "
                "until then; the certificate names them",
                source.id,
                result.locked,
                result.locked_until,
                result.legal_holds,
            )
    return {"rows": affected, "rows_this_try": done, "objects": objects}


def purge_sources(manifest, plans: Plans, *, connectors: Connectors, log) -> dict[str, Any]:
    """Rewrite the tables each plan touched, so deleted rows leave the database files."""
    results = {}
    for source in manifest.sources:
        touched = [t.ident for t in plans[source.id].tables if t.action != "keep"]
        with connectors.database(source.conn_id) as engine:
            results[source.id] = purge(engine, touched)
        log.info("Purged %s: %s", source.id, results[source.id])
    for source in manifest.object_sources:
        if plans[source.id].action == "delete":
            # the versions themselves were deleted by erase; how the store reclaims their bytes on
            # disk is the store's own business, so it is named as a residual risk, not claimed
            results[source.id] = {"method": "every version and delete marker deleted (erase stage)"}
    return {"purge": results}


def verify_sources(
    manifest, plans: Plans, *, connectors: Connectors, subject_keys: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Scan every value of every table again and list every version under each erased prefix;
    raises `ErasureError` listing every source where something of the erased customers remains,
    or a kept row is missing. `subject_keys`: source id -> the keys erase recorded (None: none)."""
    results, problems = {}, []
    for source in manifest.sources:
        with connectors.database(source.conn_id) as engine:
            after = inventory_source(engine, source.id)
            hits = full_scan_hits(engine, after)
            verification = verify_erasure(
                engine,
                plans[source.id],
                after,
                hits,
                not_personal=not_personal_columns(source),
                subject_keys=(subject_keys or {}).get(source.id),
            )
        results[source.id] = {
            "ok": verification.ok,
            "tables": verification.tables,
            "notes": getattr(verification, "notes", []),
            "values_scanned_columns": len(hits),
            "personal_values_found": sum(hits.values()),
        }
        problems += [f"{source.id}: {p}" for p in verification.problems]
    for source in manifest.object_sources:
        plan = plans[source.id]
        if plan.action != "delete":
            continue
        checked = verify_objects(connectors.object_client(source), plan.bucket, plan.prefix)
        results[source.id] = checked
        problems += [f"{source.id}: {p}" for p in checked["problems"]]
    if problems:
        raise ErasureError(
            f"erasure of {manifest.company_id} is not complete:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return {"verification": results}
