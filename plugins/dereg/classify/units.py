"""The mapped `classify` stage: classify one unit of the inventory's split (a source, one large table,
or an object source) and store the result as a part that `classification_report` merges."""

from __future__ import annotations

from typing import Any

from dereg.classify.engine import classify_source
from dereg.classify.objects import classify_objects
from dereg.connectors import Connectors
from dereg.evidence.run_artifacts import RunArtifacts, classification_part_name
from dereg.model import ClassificationResult


def classify_unit(
    unit: dict, manifest, artifacts: RunArtifacts, *, connectors: Connectors, log, progress
) -> dict[str, Any]:
    """Classify `unit` ({"source", "kind", "tables", "label", "index"}); returns counts and the part's
    artifact name and sha256. Logs each personal column with its reason (masked, never a value)."""
    sid = unit["source"]
    log.info("Classifying %s", unit["label"])
    if unit["kind"] == "objects":
        spec = next(o for o in manifest.object_sources if o.id == sid)
        inventory = artifacts.object_inventory(sid)
        result = classify_objects(connectors.object_client(spec), inventory, progress=progress)
    else:
        source = manifest.source(sid)
        with connectors.database(source.conn_id) as engine:
            result = classify_source(
                engine,
                artifacts.inventory(sid),
                sample_size=source.classify.sample_size,
                closure_date=manifest.closure_date,
                subject_table=None,  # minors are counted once the whole source is classified
                tables=unit["tables"],
                progress=progress,
                own_contacts=_own_contacts(manifest),
            )
    digest = artifacts.put_classification_part(sid, unit["index"], result)
    _log_result(unit, result, log)
    return {
        "unit": unit["label"],
        "columns": len(result.columns),
        "personal_columns": sum(1 for c in result.columns if c.personal),
        "table_problems": len(result.problems),
        "artifact": classification_part_name(sid, unit["index"]),
        "artifact_sha256": digest,
    }


def _own_contacts(manifest) -> list[str]:
    """The company's own contact texts: its addresses and numbers are not a customer's."""
    contacts = manifest.contacts
    return [contacts.operations_email, contacts.sender, contacts.reply_to or "", contacts.complaint]


def _log_result(unit: dict, result: ClassificationResult, log) -> None:
    personal = [c for c in result.columns if c.personal]
    for c in personal:
        log.info("  %s.%s: %s (%s) %s", c.table, c.column, ",".join(c.categories), c.level, c.reason)
    for p in result.problems:
        log.warning("  %s could not be classified: %s", p["table"], p["reason"])
    log.info(
        "Classified %s: %d columns, %d personal, %d table problem(s)",
        unit["label"],
        len(result.columns),
        len(personal),
        len(result.problems),
    )
