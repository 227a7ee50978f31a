"""The classification stages of the closure DAG, run with `dag.test()` on a PostgreSQL source whose
user may not read one table, with an S3 prefix of customer files and manifest overrides: one mapped
classify task per large table, the report task's JSON and HTML, and a required table that fails."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import sqlalchemy as sa
import yaml

from tests.dags.test_closure_run import DAG_ID, _conf, _ledger, closure  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def pg_closure(closure, pg_url, s3_client, bucket_name):  # noqa: F811 - the imported fixture
    """The demo closure on a PostgreSQL copy of the school, read by a role without access to notes."""
    from devtools.demo.seed import seed

    seed(pg_url, students=40)
    role = f"dereg_ro_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.exec_driver_sql(f"REVOKE SELECT ON notes FROM {role}")
    url = sa.make_url(pg_url)
    closure.env["AIRFLOW_CONN_DEMO_ACADEMY_DB"] = json.dumps(
        {"conn_type": "postgres", "host": url.host, "port": url.port, "login": role, "schema": url.database}
    )
    s3_client.create_bucket(Bucket=bucket_name)
    s3_client.put_object(
        Bucket=bucket_name, Key="uploads/forms/a.csv", Body="姓名,手机\n张伟,13812345678\n".encode()
    )
    path = closure.companies / "demo-academy.yaml"
    manifest = yaml.safe_load(path.read_text())
    manifest["sources"][0]["classify"] = {
        "sample_size": 500,
        "large_table_rows": 150,  # attendance, contracts and accounting_records get their own task
        "overrides": [
            {
                "table": "students",
                "column": "school",
                "categories": ["address"],
                "reason": "学校名称可定位学生住址",
            }
        ],
    }
    manifest["object_sources"] = [
        {"id": "uploads", "conn_id": "dereg_offsite", "bucket": bucket_name, "prefix": "uploads"}
    ]
    path.write_text(yaml.safe_dump(manifest, allow_unicode=True))
    closure.manifest_path, closure.manifest = path, manifest
    closure.role_url = url.set(username=role)
    yield closure
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP OWNED BY {role}")
        conn.exec_driver_sql(f"DROP ROLE {role}")
    admin.dispose()


def test_classification_is_mapped_reported_and_fails_only_on_required_tables(pg_closure):
    c = pg_closure
    result, log = c.sandbox().run_dag(DAG_ID, _conf(dry_run=True))
    assert result["tasks"]["classification_report"] == "success", (result, log[-6000:])
    labels = sorted(label for _, label, _ in result["mapped"]["classify"])
    assert "school_db.attendance" in labels and "uploads (objects)" in labels
    assert any(label.startswith("school_db (other") for label in labels)
    assert {state for *_, state in result["mapped"]["classify"]} == {"success"}

    reports = list((c.tmp / "output").rglob("classification.json"))
    assert len(reports) == 1 and reports[0].with_suffix(".html").exists()
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    school = next(s for s in report["sources"] if s["source_id"] == "school_db")
    columns = {(x["table"], x["column"]): x for x in school["columns"]}
    assert school["problems"] and school["problems"][0]["table"] == "notes"
    assert "permission denied" in school["problems"][0]["reason"].lower()
    assert columns[("students", "school")]["categories"] == ["address"]
    assert columns[("students", "school")]["override"] == "学校名称可定位学生住址"
    assert columns[("attendance", "lesson_date")]["categories"] == []
    assert 0 < school["minors"] <= school["subjects"] == 40
    uploads = next(s for s in report["sources"] if s["source_id"] == "uploads")
    assert {"cn_mobile", "name"} <= set(uploads["columns"][0]["categories"])
    assert "13812345678" not in reports[0].read_text(encoding="utf-8") and "13812345678" not in log
    entry = [
        e
        for e in _ledger(c.store_url).entries()
        if e.stage == "classification_report" and e.event == "succeeded"
    ][-1]
    assert entry.details["overrides"][0]["reason"] == "学校名称可定位学生住址"
    # the object source is in the plan the approver would approve: its whole prefix is erased
    plans = [e for e in _ledger(c.store_url).entries() if e.stage == "plan" and e.event == "succeeded"]
    assert plans, (result["tasks"], [line for line in log.splitlines() if "Error" in line][-5:])
    plan = plans[-1]
    assert plan.details["sources"]["uploads"]["action"] == "delete"
    assert "uploads" in plan.details["source_plan_hashes"]

    # The same classification with notes required: the report stage fails and says what to do.
    # (Called on this run's artifacts rather than through a second DAG run: the operator's failure
    # entry in the ledger is the generic one, tested with the other stages.)
    from dereg.classify.report import report_classification
    from dereg.connectors import Connectors
    from dereg.errors import DeregError
    from dereg.evidence.run_artifacts import RunArtifacts
    from dereg.manifest import load_manifest

    c.manifest["sources"][0]["classify"]["required_tables"] = ["notes"]
    c.manifest_path.write_text(yaml.safe_dump(c.manifest, allow_unicode=True))
    store = sa.create_engine(c.store_url)
    artifacts = RunArtifacts(store, entry.company_id, entry.run_id)
    connectors = Connectors(engine=lambda _conn_id: sa.create_engine(c.role_url))
    with pytest.raises(DeregError) as failed:
        report_classification(
            load_manifest(c.manifest_path),
            artifacts,
            connectors=connectors,
            output_dir=c.tmp / "required",
            log=logging.getLogger("test"),
        )
    store.dispose()
    message = str(failed.value)
    assert "could not read 1 required table(s)" in message and "school_db.notes" in message
    assert "Grant the connection's user read access" in message
    # the report is still written, and says why the table is missing
    required = json.loads((c.tmp / "required" / "classification.json").read_text(encoding="utf-8"))
    school = next(s for s in required["sources"] if s["source_id"] == "school_db")
    assert school["problems"][0]["table"] == "notes"
