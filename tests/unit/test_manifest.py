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


def test_a_missing_mapping_lists_its_required_fields_and_nested_unknown_fields_are_named():
    data = yaml.safe_load(DEMO.read_text())
    del data["contacts"]
    data["backup"]["retention"] = 30  # a typo of retention_days
    data["sources"][0]["classify"] = {"overrides": [{"table": "t", "column": "c", "categories": "name"}]}
    with pytest.raises(ManifestError) as err:
        parse_manifest(data, "x.yaml")
    problems = err.value.problems
    assert "contacts: is required" in problems
    assert "contacts.operations_email: is required" in problems
    assert "backup.retention: is not a known field (see docs/manifest.md)" in problems
    assert "sources[0].classify.overrides[0].reason: is required" in problems
    assert (
        "sources[0].classify.overrides[0].categories: must be a non-empty list of taxonomy ids "
        "(or set personal: false)"
    ) in problems


def test_a_loaded_manifest_is_read_only_and_keeps_the_flat_names():
    import pydantic

    m = load_manifest(DEMO)
    assert m.path == str(DEMO)
    assert m.reply_to == (m.contacts.reply_to or m.operations_email)
    assert (m.name_zh, m.name_en) == (m.name.zh, m.name.en)
    with pytest.raises(pydantic.ValidationError):
        m.company_id = "other"


def test_constants_are_defined_once():
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    from dereg.erase import plan
    from dereg.manifest import DEFAULT_SMTP_CONN_ID, RETAIN_ACTIONS

    assert DEFAULT_SMTP_CONN_ID == SmtpHook.default_conn_name
    assert plan.MANIFEST_RETAIN_ACTIONS is RETAIN_ACTIONS  # the plan's list is the manifest's plus "keep"
    assert plan.RETAIN_ACTIONS == (*RETAIN_ACTIONS, "keep")


DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_committed_json_schema_is_current():
    from dereg.manifest.schema import schema_text

    committed = (DOCS / "manifest.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), (
        "docs/manifest.schema.json is stale: run `dereg manifest-schema --out docs/manifest.schema.json`"
    )


def test_the_schema_accepts_the_demo_manifest_and_the_cli_prints_it(capsys):
    import json

    import jsonschema

    from dereg.cli import main
    from dereg.manifest.schema import manifest_schema

    document = json.loads(json.dumps(yaml.safe_load(DEMO.read_text()), default=str))
    jsonschema.Draft202012Validator(manifest_schema()).validate(document)
    document["backup"]["bucket"] = "A"
    assert not jsonschema.Draft202012Validator(manifest_schema()).is_valid(document)
    assert main(["manifest-schema"]) == 0
    assert json.loads(capsys.readouterr().out) == manifest_schema()


def test_docs_manifest_md_documents_every_field_of_the_schema():
    from dereg.manifest.schema import field_paths

    doc = (DOCS / "manifest.md").read_text(encoding="utf-8")
    paths = field_paths()
    assert "sources[].classify.overrides[].reason" in paths and "approval.approvers[].id" in paths
    missing = [p for p in paths if f"`{p}`" not in doc]
    assert not missing, f"docs/manifest.md does not document {missing}"


def test_a_manifest_that_is_not_yaml_is_refused_with_where_it_breaks(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("company:\n  id: broken\n  name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ManifestError) as refused:
        load_manifest(path)
    assert "(document): not valid YAML at line 4, column 1" in str(refused.value)


def test_a_manifest_that_is_not_utf8_is_refused_saying_so(tmp_path):
    path = tmp_path / "gbk.yaml"
    path.write_bytes("company_id: gbk_shop\nname_zh: 某某培训学校\n".encode("gbk"))
    with pytest.raises(ManifestError) as refused:
        load_manifest(path)
    assert str(path) in str(refused.value)
    assert "(document): not UTF-8 text at line 2: save the file as UTF-8" in str(refused.value)
