"""The `plan`, `erase`, `purge` and `verify_erasure` stages over every source of a manifest.

`plan_sources` builds each source's erasure plan from its inventory and classification and stores
it; the other three take the plans as read once by the task (`RunArtifacts.plans`), never re-read
per source, so the plans erase runs are the plans its gate checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dereg.classify.engine import full_scan_hits
from dereg.connectors import Connectors
from dereg.erase.execute import execute_plan
from dereg.erase.gate import combined_plan_hash
from dereg.erase.objects import ObjectErasurePlan, build_object_plan, erase_objects, verify_objects
from dereg.erase.plan import ErasurePlan, RetainRule, build_plan
from dereg.erase.purge import purge
from dereg.erase.verify import verify_erasure
from dereg.errors import DeregError, ErasureError
from dereg.evidence.run_artifacts import RunArtifacts
from dereg.inventory.sql import inventory_source

ERASE_BATCH = 5000  # rows per transaction when deleting or pseudonymizing in batches

Plans = Mapping[str, ErasurePlan | ObjectErasurePlan]


def plan_sources(manifest, artifacts: RunArtifacts, *, log) -> dict[str, Any]:
    """Build and store the erasure plan of every source; returns the combined hash the approver
    approves, each source's hash and each plan's summary."""
    hashes, summaries = {}, {}
    for source in manifest.sources:
        plan = _sql_plan(manifest, source, artifacts)
        artifacts.put_plan(source.id, plan)
        for action in plan.tables:
            log.info(
                "  %s.%s: %s %d rows %s",
                source.id,
                action.table,
                action.action,
                action.rows,
                ",".join(action.columns),
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


def _sql_plan(manifest, source, artifacts: RunArtifacts) -> ErasurePlan:
    inventory = artifacts.inventory(source.id)
    classification = artifacts.classification(source.id)
    elsewhere = sorted(
        {
            t.qualified_name
            for t in inventory.tables
            if t.schema and classification.personal_columns(t.qualified_name)
        }
    )
    if elsewhere:
        # fail closed: a plan that silently skipped them would certify an erasure that did not happen
        raise DeregError(
            f"source {source.id}: personal data in tables outside the default schema "
            f"({', '.join(elsewhere[:10])}); this version erases the default schema only. Move them, "
            "or connect a second source whose default schema is theirs"
        )
    return build_plan(
        company_id=manifest.company_id,
        inventory=inventory,
        classification=classification,
        subject_table=source.subject_table,
        retain=[RetainRule(table=r.table, action=r.action, law=r.law, years=r.years) for r in source.retain],
    )


def erase_preview(plans: Plans) -> dict[str, Any]:
    """What a dry run reports instead of erasing: each plan's summary."""
    return {"would": {sid: p.summary() for sid, p in plans.items()}}


def erase_sources(
    manifest, plans: Plans, *, connectors: Connectors, pseudonym_key: bytes, log, progress
) -> dict[str, Any]:
    """Run each source's approved plan: rows deleted or pseudonymized, and every object version and
    delete marker deleted under the prefixes planned for deletion (locked versions are counted)."""
    done = {}
    for source in manifest.sources:
        with connectors.database(source.conn_id) as engine:
            done[source.id] = execute_plan(
                engine,
                plans[source.id],
                pseudonym_key=pseudonym_key,
                batch_size=ERASE_BATCH,
                progress=progress,
                truncate_whole_tables=True,
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
    return {"rows": done, "objects": objects}


def purge_sources(manifest, plans: Plans, *, connectors: Connectors, log) -> dict[str, Any]:
    """Rewrite the tables each plan touched, so deleted rows leave the database files."""
    results = {}
    for source in manifest.sources:
        touched = [t.table for t in plans[source.id].tables if t.action != "keep"]
        with connectors.database(source.conn_id) as engine:
            results[source.id] = purge(engine, touched)
        log.info("Purged %s: %s", source.id, results[source.id])
    for source in manifest.object_sources:
        if plans[source.id].action == "delete":
            # the versions themselves were deleted by erase; how the store reclaims their bytes on
            # disk is the store's own business, so it is named as a residual risk, not claimed
            results[source.id] = {"method": "every version and delete marker deleted (erase stage)"}
    return {"purge": results}


def verify_sources(manifest, plans: Plans, *, connectors: Connectors) -> dict[str, Any]:
    """Scan every value of every table again and list every version under each erased prefix;
    raises `ErasureError` listing every source where something of the erased customers remains."""
    results, problems = {}, []
    for source in manifest.sources:
        with connectors.database(source.conn_id) as engine:
            after = inventory_source(engine, source.id)
            hits = full_scan_hits(engine, after)
            verification = verify_erasure(engine, plans[source.id], after, hits)
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
