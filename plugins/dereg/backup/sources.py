"""The `backup` and `restore_verify` stages over every source of a manifest.

Every SQL source is backed up, and every object source whose classification found personal data
(only those are erased, so only those need a way back); each backup is then restored into a scratch
database (or folder) and compared with what was backed up. What was taken is stored as the run's
`backups` artifact, which restore-verify reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dereg.backup import catalog, restoreparts
from dereg.backup.objects import backup_objects
from dereg.backup.parts import backup_part, finish_backup, part_rows, prepare_backup
from dereg.backup.restore import restore_and_verify
from dereg.backup.subjectkeys import seal_spec_for
from dereg.backup.writer import BackupRecord, reuse_complete
from dereg.connections import S3Location
from dereg.connectors import Connectors
from dereg.errors import BackupError, RestoreMismatch
from dereg.evidence.run_artifacts import RunArtifacts


def _entry(record: BackupRecord, location: S3Location, **extra: Any) -> dict[str, Any]:
    """What the `backups` artifact and the ledger keep of a backup: references and counts."""
    return {
        "backup_id": record.backup_id,
        **extra,
        "rows": record.total_rows,
        "tables": len(record.tables),
        "retain_until": record.retain_until,
        "object_lock": record.object_lock,
        "manifest_key": record.manifest_key,
        "bucket": location.bucket,
    }


def _summary(classification) -> dict[str, Any]:
    return {
        "personal_columns": sum(1 for c in classification.columns if c.personal),
        "sensitive_columns": sum(1 for c in classification.columns if c.level == "sensitive"),
        "minors": classification.minors,
        "subjects": classification.subjects,
    }


def _row_counts(artifacts: RunArtifacts, source_id: str) -> dict[str, int]:
    """The inventory's row count of each table (as the backup names it), to size the parts."""
    try:
        inventory = artifacts.inventory(source_id)
    except Exception:  # noqa: BLE001 - no inventory (a backup outside a closure run): one part per group
        return {}
    return {t.qualified_name: t.row_count for t in inventory.tables}


def _part_label(source_id: str, index: int, count: int, tables: list[str]) -> str:
    first = tables[0] if tables else "(no tables)"
    more = f" +{len(tables) - 1}" if len(tables) > 1 else ""
    return f"{source_id} {index + 1}/{count}: {first}{more}"


def prepare_backups(
    manifest,
    artifacts: RunArtifacts,
    *,
    connectors: Connectors,
    location: S3Location,
    keyring,
    log,
    progress,
    rows_per_part: int | None = None,
) -> dict[str, Any]:
    """Open the backup of every SQL source (schema written, tables split into parts, see parts.py;
    a complete backup of the same run is reused) and list the parts for the mapped `backup_part`
    task: one per part of each SQL source, one per object source that holds personal data (taken
    whole). Returns {"sources": source id -> {"backup_id", "parts", "reused"}, "parts": [...]};
    a part is {"source", "kind", "backup_id", "part", "label"}: references only, never a key."""
    rows_per_part = part_rows() if rows_per_part is None else rows_per_part
    opened: dict[str, dict[str, Any]] = {}
    units: list[dict[str, Any]] = []
    for source in manifest.sources:
        classification = artifacts.classification(source.id)
        with connectors.database(source.conn_id) as engine:
            prepared = prepare_backup(
                engine,
                company_id=manifest.company_id,
                run_id=artifacts.run_id,
                source_id=source.id,
                location=location,
                keyring=keyring,
                store=artifacts.store,
                retention_days=manifest.backup.retention_days,
                object_lock=manifest.backup.object_lock,
                rows_per_part=rows_per_part,
                row_counts=_row_counts(artifacts, source.id),
                classification_summary=_summary(classification),
                personal_tables=sorted({c.table for c in classification.columns if c.personal}),
                subjects=seal_spec_for(
                    manifest.backup.subject_keys, lambda s=source.id: artifacts.plan(s), classification
                ),
                progress=progress,
            )
        parts = prepared["parts"]
        opened[source.id] = {
            "backup_id": prepared["backup_id"],
            "parts": len(parts),
            "reused": prepared["reused"],
        }
        log.info(
            "Backup %s of %s opened: %d part(s) (reused=%s)",
            prepared["backup_id"],
            source.id,
            len(parts),
            prepared["reused"],
        )
        units += [
            {
                "source": source.id,
                "kind": "sql",
                "backup_id": prepared["backup_id"],
                "part": i,
                "label": _part_label(source.id, i, len(parts), tables),
            }
            for i, tables in enumerate(parts)
        ]
    for source in _object_sources_to_back_up(manifest, artifacts, log):
        units.append({"source": source.id, "kind": "objects", "label": f"{source.id} (objects)"})
    for i, unit in enumerate(units):
        unit["index"] = i
    return {"sources": opened, "parts": units}


def backup_source_part(
    manifest,
    artifacts: RunArtifacts,
    unit: dict[str, Any],
    *,
    connectors: Connectors,
    location: S3Location,
    keyring,
    log,
    progress,
) -> dict[str, Any]:
    """Write one part listed by `prepare_backups`: a SQL source's part (its data key unwrapped from
    the keyring in this process), or an object source's whole backup."""
    if unit.get("kind") == "objects":
        source = next((s for s in manifest.object_sources if s.id == unit["source"]), None)
        if source is None:
            raise BackupError(f"the manifest has no object source {unit['source']!r}; clear backup_prepare.")
        entry = _backup_object_source(
            manifest,
            artifacts,
            source,
            connectors=connectors,
            location=location,
            keyring=keyring,
            log=log,
            progress=progress,
        )
        return {"source": source.id, "backup_id": entry["backup_id"], "objects": entry["rows"]}
    source = next((s for s in manifest.sources if s.id == unit["source"]), None)
    if source is None:
        raise BackupError(f"the manifest has no source {unit['source']!r}; clear backup_prepare.")
    with connectors.database(source.conn_id) as engine:
        done = backup_part(
            engine,
            unit["backup_id"],
            int(unit["part"]),
            store=artifacts.store,
            location=location,
            keyring=keyring,
            progress=progress,
        )
    log.info(
        "Backup %s of %s, part %d: %d rows in %d tables, %d chunk(s) stored",
        done["backup_id"],
        source.id,
        done["part"],
        done["rows"],
        done["tables"],
        done["chunks"],
    )
    return {"source": source.id, **done}


def finish_backups(
    manifest, artifacts: RunArtifacts, *, location: S3Location, keyring, log, progress
) -> dict[str, Any]:
    """Complete every backup of the run once all its parts are stored (manifest written last, see
    parts.finish_backup), check the object sources' backups are complete; stores {"backups": source
    id -> entry}, as `restore_verify`, erase and the certificate read it, and returns it with
    "restore_parts": source id -> the tables of each part, for a backup just completed from more
    than one part (for `restore_units`; table names only)."""
    store, company_id, run_id = artifacts.store, manifest.company_id, artifacts.run_id
    backups = {}
    restore_parts: dict[str, list[list[str]]] = {}
    for source in manifest.sources:
        record = reuse_complete(store, company_id, run_id, source.id, None)
        if record is None:
            started = catalog.find_in_progress(store, company_id, run_id, source.id)
            if started is None:
                raise BackupError(
                    f"no backup of source {source.id!r} is in progress in run {run_id}; backup_prepare did not "
                    "open one (or it failed). Clear backup_prepare."
                )
            record = finish_backup(
                started["backup_id"], store=store, location=location, keyring=keyring, progress=progress
            )
        log.info(
            "Backup %s of %s: %d rows in %d tables (reused=%s), retained until %s",
            record.backup_id,
            source.id,
            record.total_rows,
            len(record.tables),
            record.reused,
            record.retain_until,
        )
        if record.parts is not None and len(record.parts) > 1:
            # restored part by part too (`restore_units`): `collect_restores` finishes it
            restore_parts[source.id] = record.parts
            backups[source.id] = _entry(record, location, parts=len(record.parts))
        else:
            backups[source.id] = _entry(record, location)
    for source in _object_sources_to_back_up(manifest, artifacts, None):
        record = reuse_complete(store, company_id, run_id, source.id, None)
        if record is None:
            raise BackupError(
                f"the backup of object source {source.id!r} is not complete in run {run_id}; retry its "
                "backup_part task."
            )
        backups[source.id] = _entry(record, location, kind="objects")
    artifacts.put_backups(backups)
    return {"backups": backups, "restore_parts": restore_parts}


def backup_sources(
    manifest,
    artifacts: RunArtifacts,
    *,
    connectors: Connectors,
    location: S3Location,
    keyring,
    log,
    progress,
    rows_per_part: int | None = None,
) -> dict[str, Any]:
    """Back up every source in this process: `prepare_backups`, each part in turn, `finish_backups`
    (the closure DAG runs the parts as a mapped task instead); stores and returns {"backups": ...}."""
    prepared = prepare_backups(
        manifest,
        artifacts,
        connectors=connectors,
        location=location,
        keyring=keyring,
        log=log,
        progress=progress,
        rows_per_part=rows_per_part,
    )
    for unit in prepared["parts"]:
        backup_source_part(
            manifest,
            artifacts,
            unit,
            connectors=connectors,
            location=location,
            keyring=keyring,
            log=log,
            progress=progress,
        )
    return finish_backups(manifest, artifacts, location=location, keyring=keyring, log=log, progress=progress)


def _object_sources_to_back_up(manifest, artifacts: RunArtifacts, log) -> list:
    """The object sources that hold personal data (those are erased, so those need a way back)."""
    chosen = []
    for source in manifest.object_sources:
        classification = artifacts.classification(source.id)
        if any(c.personal for c in classification.columns):
            chosen.append(source)
        elif log is not None:
            log.info("Object source %s holds no personal data: not erased, so not backed up", source.id)
    return chosen


def _backup_object_source(
    manifest,
    artifacts: RunArtifacts,
    source,
    *,
    connectors: Connectors,
    location: S3Location,
    keyring,
    log,
    progress,
) -> dict[str, Any]:
    """Back up one object source whole (a complete backup of the same run is reused)."""
    classification = artifacts.classification(source.id)
    personal = sum(1 for c in classification.columns if c.personal)
    record = backup_objects(
        connectors.object_client(source),
        bucket=source.bucket,
        prefix=source.prefix,
        company_id=manifest.company_id,
        run_id=artifacts.run_id,
        source_id=source.id,
        location=location,
        keyring=keyring,
        store=artifacts.store,
        retention_days=manifest.backup.retention_days,
        object_lock=manifest.backup.object_lock,
        classification_summary={"personal_groups": personal},
        progress=progress,
    )
    log.info(
        "Backup %s of object source %s: %d objects (reused=%s), retained until %s",
        record.backup_id,
        source.id,
        record.total_rows,
        record.reused,
        record.retain_until,
    )
    return _entry(record, location, kind="objects")


def restore_units(
    backups: dict[str, dict], parts: dict[str, list[list[str]]] | None = None
) -> list[dict[str, Any]]:
    """The units of the mapped `restore_backup` task (references only): one per backup of the run,
    or, for a backup just taken in several parts (`parts`: source id -> the tables of each part),
    one per part, {"source", "backup_id", "part", "parts", "tables", "label"}."""
    units: list[dict[str, Any]] = []
    for source_id, info in backups.items():
        split = (parts or {}).get(source_id) or []
        if len(split) > 1 and info.get("kind") != "objects":
            units += [
                {
                    "source": source_id,
                    "backup_id": info["backup_id"],
                    "part": index,
                    "parts": len(split),
                    "tables": list(names),
                    "label": f"{source_id} {info['backup_id']} part {index + 1}/{len(split)}",
                }
                for index, names in enumerate(split)
            ]
        else:
            units.append(
                {
                    "source": source_id,
                    "backup_id": info["backup_id"],
                    "label": f"{source_id} {info['backup_id']}",
                }
            )
    return units


def restore_verify_backup(
    manifest,
    artifacts: RunArtifacts,
    unit: dict[str, Any],
    *,
    location: S3Location,
    keyring,
    scratch_url: Callable[[str | None], str | None],
    log,
    progress,
) -> dict[str, Any]:
    """Restore one backup of the run (a unit of `restore_units`) and compare it with its manifest;
    the outcome is stored as the run's `restore.<source>` artifact, which `collect_restores`
    checks. Raises `RestoreMismatch` when it differs (nothing will be erased). A unit that is a
    part of a backup goes to `restore_verify_part`.

    :param scratch_url: the source's conn_id (None for object sources) -> where a PostgreSQL backup
        is restored (None: scratch SQLite).
    """
    if "part" in unit:
        return restore_verify_part(
            manifest,
            artifacts,
            unit,
            location=location,
            keyring=keyring,
            scratch_url=scratch_url,
            log=log,
            progress=progress,
        )
    source_id, backup_id = unit["source"], unit["backup_id"]
    conn_of = {source.id: source.conn_id for source in manifest.sources}
    report = restore_and_verify(
        backup_id,
        location=location,
        keyring=keyring,
        store=artifacts.store,
        scratch_url=scratch_url(conn_of.get(source_id)),
        progress=progress,
    )
    if not report.ok:
        artifacts.put_restore(
            source_id, {"backup_id": backup_id, "ok": False, "problems": len(report.problems)}
        )
        raise RestoreMismatch(_mismatch(manifest, source_id, backup_id, report.problems))
    for warning in report.warnings:  # e.g. an older backup whose manifest is unauthenticated
        log.warning("%s", warning)
    log.info(
        "Backup %s restored and verified: %d tables in %.1f s", backup_id, len(report.tables), report.seconds
    )
    result = {
        "backup_id": backup_id,
        "tables": len(report.tables),
        "rows": sum(t["restored_rows"] for t in report.tables.values()),
        "seconds": round(report.seconds, 2),
        "ok": True,
        **({"warnings": report.warnings} if report.warnings else {}),
    }
    artifacts.put_restore(source_id, result)
    return {"source": source_id, **result}


def _mismatch(manifest, source_id: str, backup_id: str, problems: list[str], what: str = "") -> str:
    return (
        f"backup {backup_id} of {manifest.company_id}/{source_id}{what} does not restore to what was "
        "backed up:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\nNothing will be erased. Take a new backup (clear the backup tasks) and investigate."
    )


def restore_verify_part(
    manifest,
    artifacts: RunArtifacts,
    unit: dict[str, Any],
    *,
    location: S3Location,
    keyring,
    scratch_url: Callable[[str | None], str | None],
    log,
    progress,
) -> dict[str, Any]:
    """Restore and verify one part of a backup (a unit of `restore_units`): its tables, each by row
    count and content hash, into the scratch schema its backup's parts share on a PostgreSQL
    scratch server (else its own scratch SQLite), see `restoreparts`. The outcome is stored as the
    run's `restore_part.<source>.<part>` artifact, which `collect_restores` checks and completes.
    A part that fails leaves none of its tables in the shared schema and raises."""
    source_id, backup_id = unit["source"], unit["backup_id"]
    index, count, names = int(unit["part"]), int(unit["parts"]), list(unit["tables"])
    what = f" (part {index + 1}/{count})"
    conn_of = {source.id: source.conn_id for source in manifest.sources}
    artifacts.put_restore_part(source_id, index, {"backup_id": backup_id, "part": index, "ok": False})
    part = restoreparts.restore_part(
        backup_id,
        names,
        run_id=artifacts.run_id,
        scratch_url=scratch_url(conn_of.get(source_id)),
        location=location,
        keyring=keyring,
        store=artifacts.store,
        progress=progress,
        log=log,
    )
    report, ok = part.report, part.report.ok
    result = {
        "backup_id": backup_id,
        "part": index,
        "parts": count,
        "tables": len(report.tables),
        "rows": sum(t["restored_rows"] for t in report.tables.values()),
        "seconds": round(report.seconds, 2),
        "ok": ok,
        "verified": part.verified,
        "shared_schema": part.shared,
        **({"warnings": report.warnings} if report.warnings else {}),
    }
    artifacts.put_restore_part(source_id, index, result)
    if not ok:
        raise RestoreMismatch(_mismatch(manifest, source_id, backup_id, report.problems, what))
    for warning in report.warnings:
        log.warning("%s", warning)
    log.info(
        "Backup %s part %d/%d restored and verified: %d tables in %.1f s",
        backup_id,
        index + 1,
        count,
        len(report.tables),
        report.seconds,
    )
    return {"source": source_id, **{k: v for k, v in result.items() if k != "verified"}}


def finish_restore_parts(
    manifest,
    artifacts: RunArtifacts,
    source_id: str,
    info: dict[str, Any],
    *,
    location: S3Location,
    keyring,
    scratch_url: Callable[[str | None], str | None],
    log,
) -> tuple[dict[str, Any] | None, list[str]]:
    """Complete the restore of a backup verified part by part: every part verified for this
    backup id, every table of the manifest verified by one of them, the foreign keys between the
    parts' tables (in the shared scratch schema); the scratch schema is dropped however it ends.
    Stores the backup's outcome as its `restore.<source>` artifact (as a whole restore does) and
    returns it with the problems found. A backup restored whole (in one process) returns its
    outcome as it is."""
    backup_id, count = info["backup_id"], int(info["parts"])
    conn_of = {source.id: source.conn_id for source in manifest.sources}
    outcomes = [artifacts.restore_part(source_id, i) for i in range(count)]
    if not any(o and o.get("backup_id") == backup_id for o in outcomes):
        return artifacts.restore(source_id), []  # not restored in parts
    outcomes = [o if o and o.get("backup_id") == backup_id else None for o in outcomes]
    problems, figures = restoreparts.finish_parts(
        backup_id,
        outcomes,
        run_id=artifacts.run_id,
        scratch_url=scratch_url(conn_of.get(source_id)),
        location=location,
        keyring=keyring,
        store=artifacts.store,
        missing="was not restored (its restore_backup task did not run)",
        failed=lambda i, n, _outcome: [
            f"part {i + 1}/{n} did not restore to what was backed up (see its task's log)"
        ],
    )
    done = [o for o in outcomes if o]
    result: dict[str, Any] = {
        "backup_id": backup_id,
        "parts": count,
        **figures,
        "tables": sum(int(o.get("tables") or 0) for o in done),
        "rows": sum(int(o.get("rows") or 0) for o in done),
        "seconds": round(sum(float(o.get("seconds") or 0) for o in done), 2),
    }
    result["ok"] = not problems
    if problems:
        result["problems"] = len(problems)
    artifacts.put_restore(source_id, result)
    if log is not None and not problems:
        log.info(
            "Backup %s restored and verified in %d parts: %d tables, %s foreign key(s) checked across them",
            backup_id,
            count,
            result["tables"],
            result.get("foreign_keys_checked"),
        )
    return result, problems


def collect_restores(
    manifest,
    artifacts: RunArtifacts,
    *,
    location: S3Location | None = None,
    keyring=None,
    scratch_url: Callable[[str | None], str | None] | None = None,
    log=None,
) -> dict[str, Any]:
    """Every backup of the run was restored and verified (by `restore_verify_backup`, in whichever
    worker; a backup restored in parts is completed here, `finish_restore_parts`): returns
    {"restores": source id -> outcome}; raises `RestoreMismatch` naming each backup that was not,
    or not successfully, or whose outcome belongs to another backup."""
    results, missing, found = {}, [], []
    for source_id, info in artifacts.backups().items():
        if int(info.get("parts") or 1) > 1 and location is not None:
            outcome, problems = finish_restore_parts(
                manifest,
                artifacts,
                source_id,
                info,
                location=location,
                keyring=keyring,
                scratch_url=scratch_url or (lambda conn_id: None),
                log=log,
            )
            found += [f"{source_id} ({info['backup_id']}): {p}" for p in problems]
        else:
            outcome = artifacts.restore(source_id)
        if outcome is None or outcome.get("backup_id") != info["backup_id"] or outcome.get("ok") is not True:
            missing.append(f"{source_id} ({info['backup_id']})")
            continue
        results[source_id] = outcome
    if missing:
        raise RestoreMismatch(
            f"backups of {manifest.company_id} not restored and verified in this run: {', '.join(missing)}. "
            + "".join(f"\n  - {p}" for p in found)
            + "\nNothing will be erased. Clear their restore_backup tasks (or, if one does not restore, take a "
            "new backup and investigate), then this one."
        )
    return {"restores": results}


def restore_verify_sources(
    manifest,
    artifacts: RunArtifacts,
    *,
    location: S3Location,
    keyring,
    scratch_url: Callable[[str | None], str | None],
    log,
    progress,
) -> dict[str, Any]:
    """Restore each backup of the run in turn and compare it with its manifest (the closure DAG maps
    `restore_verify_backup` instead); raises `RestoreMismatch` at the first that differs."""
    for unit in restore_units(artifacts.backups()):
        restore_verify_backup(
            manifest,
            artifacts,
            unit,
            location=location,
            keyring=keyring,
            scratch_url=scratch_url,
            log=log,
            progress=progress,
        )
    return collect_restores(manifest, artifacts)
