"""The plan stage fails closed when an object source holds personal data in a real run (its files
are classified but not yet backed up or erased), and only warns in a dry run."""

from __future__ import annotations

import pytest
import yaml

from dereg.errors import DeregError
from dereg.evidence.artifacts import put_artifact
from dereg.evidence.ledger import Ledger
from dereg.evidence.store import open_store
from dereg.manifest import load_manifest
from dereg.model import ClassificationResult, ColumnFinding
from dereg.operators.base import RunContext
from dereg.operators.stages import PlanOperator
from tests.dags.harness import ROOT


@pytest.fixture
def run(tmp_path, store_url):
    data = yaml.safe_load((ROOT / "include/companies/demo-academy.yaml").read_text())
    data["object_sources"] = [
        {"id": "uploads", "conn_id": "dereg_offsite", "bucket": "crm-files", "prefix": "u"}
    ]
    path = tmp_path / "demo-academy.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    store = open_store(store_url)
    context = RunContext(
        manifest=load_manifest(path),
        run_id="r1",
        triggered_by="ops",
        dry_run=False,
        reason="test",
        notice_window_days=0,
        store=store,
        ledger=Ledger(store),
    )
    found = ClassificationResult(
        "uploads", [ColumnFinding("forms", "*.csv", ["cn_mobile"], "general", 10, 3, ["138****5678"], "")]
    )
    put_artifact(store, "demo_academy", "r1", "classification.uploads", found.to_dict())
    return context


def test_a_real_run_refuses_to_plan(run):
    with pytest.raises(DeregError, match="object source.*uploads hold personal data.*Remove them"):
        PlanOperator(task_id="plan", manifest_path=run.manifest.path).act(run, {})


def test_object_sources_without_personal_data_do_not_block(run):
    empty = ClassificationResult("uploads", [ColumnFinding("forms", "*.png", [], None, 4, 0, [], "")])
    put_artifact(run.store, "demo_academy", "r1", "classification.uploads", empty.to_dict())
    assert PlanOperator._object_sources_with_personal_data(run) == []
