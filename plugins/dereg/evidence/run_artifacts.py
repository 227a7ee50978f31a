"""The artifacts of one closure run, by what they are rather than by name.

Stages hand each other JSON documents through the compliance store (`dereg.evidence.artifacts`):
the inventory of every source, the classification units and parts, each source's classification
and erasure plan, the backups taken, the certificate. `RunArtifacts` is the only place that knows
their names and how each decodes, so a stage asks for `artifacts.plan(source_id)` and gets an
`ErasurePlan`, and a renamed artifact is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from dereg.classify.objects import ObjectInventory
from dereg.erase.objects import ObjectErasurePlan
from dereg.erase.plan import ErasurePlan
from dereg.evidence.artifacts import get_artifact, put_artifact
from dereg.model import ClassificationResult, SourceInventory

UNITS = "classification.units"
BACKUPS = "backups"
CERTIFICATE = "certificate"


def inventory_name(source_id: str) -> str:
    return f"inventory.{source_id}"


def classification_part_name(source_id: str, index: int) -> str:
    return f"classification.part.{source_id}.{index}"


def classification_name(source_id: str) -> str:
    return f"classification.{source_id}"


def subject_keys_name(source_id: str) -> str:
    return f"subject_keys.{source_id}"


def plan_name(source_id: str) -> str:
    return f"plan.{source_id}"


def restore_name(source_id: str) -> str:
    return f"restore.{source_id}"


def restore_part_name(source_id: str, index: int) -> str:
    return f"restore_part.{source_id}.{index:05d}"


@dataclass(frozen=True)
class RunArtifacts:
    """The artifacts of company `company_id`'s run `run_id` in the compliance store `store`.

    Each `put_*` stores (or, on a retry, replaces) one artifact and returns its sha256; each getter
    raises `GateError` when the stage that produces the artifact has not run.
    """

    store: Engine
    company_id: str
    run_id: str

    def _put(self, name: str, body: Any) -> str:
        return put_artifact(self.store, self.company_id, self.run_id, name, body)

    def _get(self, name: str) -> Any:
        return get_artifact(self.store, self.company_id, self.run_id, name)

    # inventory
    def put_inventory(self, source_id: str, inventory: SourceInventory | ObjectInventory) -> str:
        return self._put(inventory_name(source_id), inventory.to_dict())

    def inventory(self, source_id: str) -> SourceInventory:
        """The inventory of SQL source `source_id`."""
        return SourceInventory.from_dict(self._get(inventory_name(source_id)))

    def object_inventory(self, source_id: str) -> ObjectInventory:
        """The inventory of object source `source_id`."""
        return ObjectInventory.from_dict(self._get(inventory_name(source_id)))

    # classification
    def put_units(self, units: list[dict]) -> str:
        return self._put(UNITS, units)

    def units(self) -> list[dict]:
        """The inventory's split of the classification: {"source", "kind", "tables", "label", "index"}."""
        return self._get(UNITS)

    def put_classification_part(self, source_id: str, index: int, result: ClassificationResult) -> str:
        return self._put(classification_part_name(source_id, index), result.to_dict())

    def classification_part(self, source_id: str, index: int) -> ClassificationResult:
        return ClassificationResult.from_dict(self._get(classification_part_name(source_id, index)))

    def put_classification(self, source_id: str, result: ClassificationResult) -> str:
        return self._put(classification_name(source_id), result.to_dict())

    def classification(self, source_id: str) -> ClassificationResult:
        """The merged classification of a source (SQL or objects), as the report published it."""
        return ClassificationResult.from_dict(self._get(classification_name(source_id)))

    # erasure plans
    def put_plan(self, source_id: str, plan: ErasurePlan | ObjectErasurePlan) -> str:
        return self._put(plan_name(source_id), plan.to_dict())

    def plan(self, source_id: str) -> ErasurePlan:
        return ErasurePlan.from_dict(self._get(plan_name(source_id)))

    def object_plan(self, source_id: str) -> ObjectErasurePlan:
        return ObjectErasurePlan.from_dict(self._get(plan_name(source_id)))

    def plans(self, manifest: Any) -> dict[str, ErasurePlan | ObjectErasurePlan]:
        """The erasure plan of every source of `manifest`: SQL sources first, then object sources.
        Read once per task and passed around: a plan is never re-read inside a loop."""
        plans: dict[str, ErasurePlan | ObjectErasurePlan] = {s.id: self.plan(s.id) for s in manifest.sources}
        plans.update({o.id: self.object_plan(o.id) for o in manifest.object_sources})
        return plans

    # the subject table's primary key values, recorded by erase before it changes anything
    # (references, not personal data), so verification can follow links by key
    def put_subject_keys(self, source_id: str, keys: dict) -> str:
        return self._put(subject_keys_name(source_id), keys)

    def subject_keys(self, source_id: str) -> dict | None:
        """{"columns", "values"} of source `source_id`'s subjects; None when erase recorded none."""
        from dereg.errors import GateError

        try:
            return self._get(subject_keys_name(source_id))
        except GateError:
            return None

    # backups and certificate
    def put_backups(self, backups: dict[str, dict]) -> str:
        return self._put(BACKUPS, backups)

    def backups(self) -> dict[str, dict]:
        """source id -> {"backup_id", "rows", "tables", "retain_until", ...} of the backups taken."""
        return self._get(BACKUPS)

    def put_restore(self, source_id: str, result: dict) -> str:
        """The outcome of restoring and verifying the backup of `source_id` (a mapped task's)."""
        return self._put(restore_name(source_id), result)

    def restore(self, source_id: str) -> dict | None:
        from dereg.errors import GateError

        try:
            return self._get(restore_name(source_id))
        except GateError:
            return None

    def put_restore_part(self, source_id: str, index: int, result: dict) -> str:
        """The outcome of restoring and verifying part `index` of the backup of `source_id`."""
        return self._put(restore_part_name(source_id, index), result)

    def restore_part(self, source_id: str, index: int) -> dict | None:
        from dereg.errors import GateError

        try:
            return self._get(restore_part_name(source_id, index))
        except GateError:
            return None

    def put_certificate(self, certificate: dict) -> str:
        return self._put(CERTIFICATE, certificate)

    def certificate(self) -> dict:
        return self._get(CERTIFICATE)
