"""The `inventory` stage over every source of a manifest, and the split of the classification.

Each SQL source is reflected (schemas, tables, columns, keys, row counts, then the links between
its tables: `inventory/links.py`) and each object source
listed (objects by folder and type); each inventory is stored as a run artifact. The classification
is then split into units for the mapped `classify` task: one per table above the source's
`classify.large_table_rows`, one for the rest of each source, one per object source.
"""

from __future__ import annotations

from typing import Any

from dereg.classify.objects import inventory_objects
from dereg.connectors import Connectors
from dereg.evidence.run_artifacts import RunArtifacts
from dereg.inventory.links import link_report
from dereg.inventory.sql import inventory_source
from dereg.model import SourceInventory


def classification_units(source_id: str, inventory: SourceInventory, large_table_rows: int) -> list[dict]:
    """One unit per table above `large_table_rows` rows, one for the rest of the source."""
    large = [t.qualified_name for t in inventory.tables if t.row_count > large_table_rows]
    rest = [t.qualified_name for t in inventory.tables if t.qualified_name not in large]
    units = [
        {"source": source_id, "kind": "sql", "tables": [name], "label": f"{source_id}.{name}"}
        for name in large
    ]
    if rest or not large:
        label = source_id if not large else f"{source_id} (other {len(rest)} tables)"
        units.append({"source": source_id, "kind": "sql", "tables": rest, "label": label})
    return units


def inventory_sources(manifest, artifacts: RunArtifacts, *, connectors: Connectors, log) -> dict[str, Any]:
    """Inventory every source of `manifest`, store each inventory and the classification units.

    Returns {"sources": source id -> counts and the artifact's sha256, "units": the units, each
    with its "index"}. Names and counts only.
    """
    summary: dict[str, dict] = {}
    units: list[dict] = []
    for source in manifest.sources:
        with connectors.database(source.conn_id) as engine:
            inventory = inventory_source(engine, source.id)
            links = link_report(engine, inventory, subject_table=source.subject_table, specs=source.links)
        inventory.links = links.links
        inventory.rejected_links = [c.to_dict() for c in links.candidates if not c.accepted]
        digest = artifacts.put_inventory(source.id, inventory)
        rows = sum(t.row_count for t in inventory.tables)
        problems = [t for t in inventory.tables if t.problem]
        log.info(
            "Inventory of %s: %d tables, %d rows%s",
            source.id,
            len(inventory.tables),
            rows,
            f"; {len(problems)} table(s) could not be counted" if problems else "",
        )
        for t in problems:
            log.warning("  %s: %s", t.qualified_name, t.problem)
        log.info("Links of %s: %s", source.id, links.summary())
        units += classification_units(source.id, inventory, source.classify.large_table_rows)
        summary[source.id] = {
            "tables": len(inventory.tables),
            "rows": rows,
            "table_problems": len(problems),
            "links": {kind: links.count(kind) for kind in ("declared", "inferred", "manifest")},
            "links_rejected_by_values": len(links.rejected_by_values),
            "artifact_sha256": digest,
        }
    for source in manifest.object_sources:
        objects = inventory_objects(connectors.object_client(source), source.id, source.bucket, source.prefix)
        digest = artifacts.put_inventory(source.id, objects)
        log.info(
            "Inventory of %s (s3://%s/%s): %d objects, %d bytes in %d folder/type groups",
            source.id,
            source.bucket,
            source.prefix,
            objects.objects,
            objects.bytes,
            len(objects.groups),
        )
        units.append(
            {"source": source.id, "kind": "objects", "tables": [], "label": f"{source.id} (objects)"}
        )
        summary[source.id] = {"objects": objects.objects, "bytes": objects.bytes, "artifact_sha256": digest}
    for i, unit in enumerate(units):
        unit["index"] = i
    artifacts.put_units(units)
    log.info("Classification split into %d unit(s): %s", len(units), ", ".join(u["label"] for u in units))
    return {"sources": summary, "units": units}
