"""Quarterly recovery drills: restore every retained backup and check what comes back.

A backup that was never restored is a hope. The `recovery_drill` DAG runs on the first day of
January, April, July and October: `retained_backups` lists the complete backups of the catalog
still under retention, one mapped `drill` task restores each into a scratch copy (a PostgreSQL
backup into a scratch schema on DEREG_SCRATCH_PG_URL or its source's own server, anything else, or
when that server cannot be used, into a scratch SQLite file; removed afterwards) and compares row counts and content hashes with the backup's manifest, and
`drill_report` publishes the results and e-mails the operations address of each company whose
drill failed. Every drill writes its time to restore and its result to the ledger (stage
`recovery_drill`, the company's id, the drill run's id), so an auditor sees the drills beside the
closures. Only ids, counts and times leave this module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from dereg import config

log = logging.getLogger(__name__)

DAG_ID = "recovery_drill"
SCHEDULE = "0 3 1 1,4,7,10 *"  # 03:00 UTC on 1 January, April, July and October
STAGE = "recovery_drill"


def retained_backups(store, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Complete backups whose retention has not ended: what a drill must be able to restore."""
    from dereg.backup import catalog

    now = now or dt.datetime.now(dt.UTC)
    found = []
    for b in catalog.list_backups(store):
        until = b.get("retain_until")
        if until and dt.datetime.fromisoformat(until) <= now:
            continue
        found.append(catalog.task_ref(b))
    return found


def scratch_url_for(backup: dict[str, Any]) -> str | None:
    """The PostgreSQL server a drill restores a PostgreSQL backup on: DEREG_SCRATCH_PG_URL, else
    the source's own server (from the company manifest's connection), else None (scratch SQLite)."""
    from dereg.errors import ManifestError
    from dereg.manifest import load_manifest, manifest_paths

    if config.scratch_pg_url():
        return config.scratch_pg_url()
    for path in manifest_paths():
        try:
            m = load_manifest(path)
        except ManifestError:
            continue
        if m.company_id != backup["company_id"]:
            continue
        for source in m.sources:
            if source.id == backup["source_id"]:
                from dereg.connections import scratch_url

                return scratch_url(source.conn_id)
    return None


def drill_one(
    backup: dict[str, Any],
    *,
    location,
    keyring,
    store,
    drill_run_id: str,
    progress=None,
    scratch_url: str | None = None,
) -> dict:
    """Restore one backup into a scratch database and verify it; the result goes to the ledger.
    `scratch_url`: a PostgreSQL server for a PostgreSQL backup's scratch schema (else scratch SQLite)."""
    from dereg.backup.restore import restore_and_verify
    from dereg.errors import DeregError
    from dereg.evidence.ledger import Ledger
    from dereg.redact import redact

    started = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {"backup_id": backup["backup_id"], "company_id": backup["company_id"]}
    try:
        report = restore_and_verify(
            backup["backup_id"],
            location=location,
            keyring=keyring,
            store=store,
            scratch_url=scratch_url,
            progress=progress,
        )
        result.update(
            ok=report.ok,
            seconds=round(report.seconds, 2),
            tables=len(report.tables),
            rows=sum(int(t.get("restored_rows") or 0) for t in report.tables.values()),
            problems=[redact(p) for p in report.problems],
            warnings=report.warnings,
        )
    except DeregError as exc:
        result.update(ok=False, seconds=round((dt.datetime.now(dt.UTC) - started).total_seconds(), 2))
        result["problems"] = [redact(str(exc))]
    Ledger(store).append(
        company_id=backup["company_id"],
        run_id=drill_run_id,
        stage=STAGE,
        event="succeeded" if result["ok"] else "failed",
        actor="recovery_drill",
        details=result,
    )
    return result


#: the ledger stage of one part of a drill of a large backup (`drill_part`); the backup's own
#: `recovery_drill` entry is written when its parts are finished (`finish_drill_parts`)
PART_STAGE = "recovery_drill_part"


def drill_units(
    backups: list[dict[str, Any]], *, location_of, keyring, store, rows_per_part=None
) -> list[dict]:
    """The units of the mapped `drill` task: one per backup, or one per part of a SQL backup whose
    manifest lists tables of at least `rows_per_part` rows (`DEREG_BACKUP_PART_ROWS`, split as a
    backup's parts are: `parts.plan_parts`), labelled `<company>.<source> <backup id> part 2/3`.
    A manifest that cannot be read leaves its backup whole (its drill then says why).
    `location_of(backup)`: the S3 location of a backup's objects."""
    from dereg.backup import catalog, restoreparts
    from dereg.backup.parts import part_rows, plan_parts
    from dereg.errors import DeregError

    rows_per_part = part_rows() if rows_per_part is None else rows_per_part
    units: list[dict] = []
    for backup in backups:
        split: list[list[str]] = []
        recorded = catalog.get(store, backup["backup_id"]) or {}
        # a backup of no more rows than one part holds is one part: its manifest is not read here
        if rows_per_part > 0 and int(recorded.get("total_rows") or 0) > rows_per_part:
            try:
                manifest = restoreparts.read_checked_manifest(
                    backup["backup_id"], location=location_of(backup), keyring=keyring, store=store
                )
            except DeregError:
                manifest = None
            if manifest is not None and manifest.get("kind") != "objects":
                tables = restoreparts.restorable_tables(manifest)
                rows = {n: int(manifest["tables"][n].get("rows") or 0) for n in tables}
                split = plan_parts(tables, rows, rows_per_part)
        if len(split) > 1:
            units += [
                {
                    **backup,
                    "part": i,
                    "parts": len(split),
                    "tables": names,
                    "label": f"{backup['label']} part {i + 1}/{len(split)}",
                }
                for i, names in enumerate(split)
            ]
        else:
            units.append(backup)
    return units


def drill_part(
    unit: dict[str, Any], *, location, keyring, store, drill_run_id: str, progress=None, scratch_url=None
) -> dict:
    """Restore and verify one part of a backup (a unit of `drill_units`), as the closure's
    `restore_backup` does (`sources.restore_verify_part`: the parts share a scratch schema on a
    PostgreSQL scratch server); the result goes to the ledger under `PART_STAGE`."""
    from dereg.backup import restoreparts
    from dereg.errors import DeregError
    from dereg.evidence.ledger import Ledger
    from dereg.redact import redact

    backup_id, names = unit["backup_id"], list(unit["tables"])
    result: dict[str, Any] = {
        "backup_id": backup_id,
        "company_id": unit["company_id"],
        "part": unit["part"],
        "parts": unit["parts"],
    }
    started = dt.datetime.now(dt.UTC)
    try:
        part = restoreparts.restore_part(
            backup_id,
            names,
            run_id=drill_run_id,
            scratch_url=scratch_url,
            location=location,
            keyring=keyring,
            store=store,
            progress=progress,
            log=log,
        )
        report = part.report
        result.update(
            ok=report.ok,
            seconds=round(report.seconds, 2),
            tables=len(report.tables),
            rows=sum(int(t.get("restored_rows") or 0) for t in report.tables.values()),
            problems=[redact(p) for p in report.problems],
            verified=part.verified,
            shared_schema=part.shared,
        )
    except DeregError as exc:
        result.update(ok=False, seconds=round((dt.datetime.now(dt.UTC) - started).total_seconds(), 2))
        result["problems"] = [redact(str(exc))]
    Ledger(store).append(
        company_id=unit["company_id"],
        run_id=drill_run_id,
        stage=PART_STAGE,
        event="succeeded" if result["ok"] else "failed",
        actor="recovery_drill",
        details=result,
    )
    return result


def finish_drill_parts(
    backup: dict[str, Any],
    parts: list[dict],
    *,
    location,
    keyring,
    store,
    drill_run_id: str,
    scratch_url=None,
) -> dict:
    """Complete the drill of a backup restored in parts (`parts`: the latest ledger details of each
    part in this drill run), as the closure's `restore_verify` does: every part verified, every
    table covered, the foreign keys across the parts in the shared scratch schema, which is dropped
    however it ends. Writes the backup's `recovery_drill` entry and returns its details."""
    from dereg.backup import restoreparts
    from dereg.evidence.ledger import Ledger
    from dereg.redact import redact

    backup_id, count = backup["backup_id"], int(backup["parts"])
    by_part = {int(p["part"]): p for p in parts if p.get("backup_id") == backup_id}
    problems, figures = restoreparts.finish_parts(
        backup_id,
        [by_part.get(i) for i in range(count)],
        run_id=drill_run_id,
        scratch_url=scratch_url,
        location=location,
        keyring=keyring,
        store=store,
        missing="did not record a result (see its drill task's log)",
        failed=lambda i, n, part: [f"part {i + 1}/{n}: {p}" for p in part.get("problems") or ["failed"]],
        part_task="drill",
    )
    problems = [redact(p) for p in problems]
    result: dict[str, Any] = {
        "backup_id": backup_id,
        "company_id": backup["company_id"],
        "parts": count,
        **figures,
    }
    result.update(
        ok=not problems,
        seconds=round(sum(float(p.get("seconds") or 0) for p in by_part.values()), 2),
        tables=sum(int(p.get("tables") or 0) for p in by_part.values()),
        rows=sum(int(p.get("rows") or 0) for p in by_part.values()),
        problems=problems,
    )
    Ledger(store).append(
        company_id=backup["company_id"],
        run_id=drill_run_id,
        stage=STAGE,
        event="succeeded" if result["ok"] else "failed",
        actor="recovery_drill",
        details=result,
    )
    return result


def write_report(results: list[dict], drill_run_id: str, directory: Path | None = None) -> Path:
    directory = directory or config.output_dir() / "drills"
    directory.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in drill_run_id)
    path = directory / f"{safe}.json"
    body = {
        "drill_run_id": drill_run_id,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "backups": len(results),
        "passed": sum(1 for r in results if r.get("ok")),
        "failed": [r for r in results if not r.get("ok")],
        "results": results,
    }
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def alert_failures(results: list[dict], smtp, *, drill_run_id: str, sender: str = "dereg@localhost") -> int:
    """One e-mail per company with a failed drill, to its operations address; returns messages sent.
    `smtp`: the SMTP provider's hook (`dereg.connections.smtp_hook`), opened here only when needed."""
    from dereg.alerts import email_companies

    failed: dict[str, list[dict]] = {}
    for r in results:
        if not r.get("ok"):
            failed.setdefault(r["company_id"], []).append(r)

    def body(company: str, rows: list[dict]) -> list[str]:
        lines = [
            f"Recovery drill {drill_run_id}: these backups of {company} did not restore as recorded.",
            "",
        ]
        lines += [f"- {r['backup_id']}: " + "; ".join(r.get("problems") or ["failed"]) for r in rows]
        return [*lines, "", "Check the drill task's log in Airflow and the ledger (stage recovery_drill)."]

    return email_companies(
        failed,
        smtp,
        subject=lambda company, rows: f"[Dereg] recovery drill FAILED for {company}: {len(rows)} backup(s)",
        body=body,
        what="drill alert",
        sender=sender,
    )
