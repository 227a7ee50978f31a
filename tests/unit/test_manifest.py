from pathlib import Path

import pytest
import yaml

from dereg.errors import ManifestError
from dereg.manifest import load_manifest, parse_manifest

DEMO = Path(__file__).resolve().parents[2] / "include" / "companies" / "demo-academy.yaml"


def test_demo_manifest_is_valid():
    m = load_manifest(DEMO)
    assert m.dag_id == "closure__demo_academy"
    assert m.sources[0].retain[0].table == "accounting_records"


def test_every_problem_is_reported_with_its_path():
    data = yaml.safe_load(DEMO.read_text())
    data["sources"].append({"id": "crm", "subject_table": "customers"})
    data["backup"]["region"] = "us-east-1"
    data["backup"]["bucket"] = "A"
    with pytest.raises(ManifestError) as err:
        parse_manifest(data, "x.yaml")
    problems = err.value.problems
    assert "sources[1].conn_id: is required" in problems
    assert any(p.startswith("backup.bucket:") for p in problems)
    assert any(p.startswith("backup.region:") for p in problems)
    assert len(problems) == 3


def test_unknown_connections_are_named_with_their_paths():
    from dereg.manifest import connection_problems

    m = load_manifest(DEMO)
    problems = connection_problems(m, lambda conn_id: conn_id != "dereg_smtp")
    assert len(problems) == 1
    assert problems[0].startswith("notify.smtp_conn_id: no such connection 'dereg_smtp'")
    assert "AIRFLOW_CONN_DEREG_SMTP" in problems[0]


def test_approvers_may_carry_the_auth_managers_user_id():
    """FAB's user ids are numeric: `{name, id}` assigns the approval by id and keeps the name."""
    from dereg.operators.approval import ErasureApprovalOperator

    data = yaml.safe_load(DEMO.read_text())
    data["approval"]["approvers"] = ["approver", {"name": "li.wei", "id": 7}]
    m = parse_manifest(data, "x.yaml")
    assert m.approvers == ["approver", "li.wei"]
    assert m.approver_ids == {"li.wei": "7"}
    op = ErasureApprovalOperator(
        task_id="approve", manifest_path="x.yaml", approvers=m.approvers, approver_ids=m.approver_ids
    )
    assert op.assigned_users == [{"id": "approver", "name": "approver"}, {"id": "7", "name": "li.wei"}]

    data["approval"]["approvers"] = ["ok", {"name": "x"}, {"name": "y", "id": 3, "role": "boss"}, 5]
    with pytest.raises(ManifestError) as err:
        parse_manifest(data, "x.yaml")
    assert [p.split(":")[0] for p in err.value.problems] == [
        "approval.approvers[1]",
        "approval.approvers[2]",
        "approval.approvers[3]",
    ]


def test_notify_defaults_and_copy_delivery_is_checked():
    data = yaml.safe_load(DEMO.read_text())
    del data["notify"]
    m = parse_manifest(data, "x.yaml")
    assert m.smtp_conn_id == "smtp_default"  # the SMTP provider's default connection
    assert (m.copy_delivery, m.copy_attachment_max_kb, m.rate_per_minute) == ("link", 10240, 3000)
    data["notify"] = {"copy_delivery": "attachment", "copy_attachment_max_kb": 512}
    m = parse_manifest(data, "x.yaml")
    assert (m.copy_delivery, m.copy_attachment_max_kb) == ("attachment", 512)
    data["notify"] = {"copy_delivery": "fax", "copy_attachment_max_kb": 0}
    with pytest.raises(ManifestError) as err:
        parse_manifest(data, "x.yaml")
    assert err.value.problems[0].startswith(
        "notify.copy_delivery: must be one of link, attachment, got 'fax'"
    )
    assert err.value.problems[1] == "notify.copy_attachment_max_kb: must be at least 1, got 0"
