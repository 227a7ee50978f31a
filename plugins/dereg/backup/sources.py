"""The `backup` and `restore_verify` stages over every source of a manifest.

Every SQL source is backed up, and every object source whose classification found personal data
(only those are erased, so only those need a way back); each backup is then restored into a scratch
database (or folder) and compared with what was backed up. What was taken is stored as the run's
`backups` artifact, which restore-verify reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dereg.backup.archive import BackupRecord, create_backup
from dereg.backup.objects import backup_objects
from dereg.backup.restore import restore_and_verify
from dereg.backup.subjectkeys import seal_spec_for
from dereg.connections import S3Location
from dereg.connectors import Connectors
from dereg.errors import RestoreMismatch
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


def backup_sources(
    manifest,
    artifacts: RunArtifacts,
    *,
    connectors: Connectors,
    location: S3Location,
    keyring,
    log,
    progress,
) -> dict[str, Any]:
    """Back up every source to `location` under data keys wrapped by `keyring` (a retry reuses a
    complete backup of the same run); stores and returns {"backups": source id -> entry}."""
    backups = {}
    for source in manifest.sources:
        classification = artifacts.classification(source.id)
        summary = {
            "personal_columns": sum(1 for c in classification.columns if c.personal),
            "sensitive_columns": sum(1 for c in classification.columns if c.level == "sensitive"),
            "minors": classification.minors,
            "subjects": classification.subjects,
        }
        with connectors.database(source.conn_id) as engine:
            record = create_backup(
                engine,
                company_id=manifest.company_id,
                run_id=artifacts.run_id,
                source_id=source.id,
                location=location,
                keyring=keyring,
                store=artifacts.store,
                retention_days=manifest.backup.retention_days,
                object_lock=manifest.backup.object_lock,
                classification_summary=summary,
                progress=progress,
                personal_tables=sorted({c.table for c in classification.columns if c.personal}),
                subjects=seal_spec_for(
                    manifest.backup.subject_keys, lambda s=source.id: artifacts.plan(s), classification
                ),
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
        backups[source.id] = _entry(record, location)
    backups.update(
        backup_object_sources(
            manifest,
            artifacts,
            connectors=connectors,
            location=location,
            keyring=keyring,
            log=log,
            progress=progress,
        )
    )
    artifacts.put_backups(backups)
    return {"backups": backups}


def backup_object_sources(
    manifest,
    artifacts: RunArtifacts,
    *,
    connectors: Connectors,
    location: S3Location,
    keyring,
    log,
    progress,
) -> dict[str, dict]:
    """Back up each object source that holds personal data (those are the ones erased)."""
    backups = {}
    for source in manifest.object_sources:
        classification = artifacts.classification(source.id)
        personal = sum(1 for c in classification.columns if c.personal)
        if not personal:
            log.info("Object source %s holds no personal data: not erased, so not backed up", source.id)
            continue
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
        backups[source.id] = _entry(record, location, kind="objects")
    return backups


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
    """Restore each backup of the run and compare it with its manifest; raises `RestoreMismatch`
    at the first that differs (nothing will be erased).

    :param scratch_url: the source's conn_id (None for object sources) -> where a PostgreSQL backup
        is restored (None: scratch SQLite).
    """
    conn_of = {source.id: source.conn_id for source in manifest.sources}
    results = {}
    for source_id, info in artifacts.backups().items():
        report = restore_and_verify(
            info["backup_id"],
            location=location,
            keyring=keyring,
            store=artifacts.store,
            scratch_url=scratch_url(conn_of.get(source_id)),
            progress=progress,
        )
        if not report.ok:
            raise RestoreMismatch(
                f"backup {info['backup_id']} of {manifest.company_id}/{source_id} does not restore to what was "
                "backed up:\n"
                + "\n".join(f"  - {p}" for p in report.problems)
                + "\nNothing will be erased. Take a new backup (clear the backup task) and investigate."
            )
        for warning in report.warnings:  # e.g. an older backup whose manifest is unauthenticated
            log.warning("%s", warning)
        log.info(
            "Backup %s restored and verified: %d tables in %.1f s",
            info["backup_id"],
            len(report.tables),
            report.seconds,
        )
        results[source_id] = {
            "backup_id": info["backup_id"],
            "tables": len(report.tables),
            "rows": sum(t["restored_rows"] for t in report.tables.values()),
            "seconds": round(report.seconds, 2),
            "ok": True,
            **({"warnings": report.warnings} if report.warnings else {}),
        }
    return {"restores": results}
