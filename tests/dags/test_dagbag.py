import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagbag(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_one_closure_dag_per_manifest(dagbag):
    assert dagbag.import_errors == {}
    manifests = list((ROOT / "include" / "companies").glob("*.yaml"))
    closure = [d for d in dagbag.dags if d.startswith("closure__")]
    assert len(closure) == len(manifests)
    dag = dagbag.dags["closure__demo_academy"]
    assert {"preflight", "backup", "restore_verify", "approve", "erase", "certificate"} <= set(dag.task_ids)
    assert dag.params["dry_run"] is True or dag.params.get_param("dry_run").value is True
    # restore_verify runs once every restore_backup has ended, however: it drops the scratch schema
    # of a backup restored in parts also when a part failed (and then refuses)
    assert dag.get_task("restore_verify").trigger_rule == "all_done"
    assert dag.get_task("restore_verify").upstream_task_ids == {"restore_backup"}


def test_broken_manifest_gets_a_visible_dag(tmp_path, monkeypatch):
    companies = tmp_path / "companies"
    companies.mkdir()
    (companies / "good.yaml").write_text((ROOT / "include/companies/demo-academy.yaml").read_text())
    (companies / "bad-shop.yaml").write_text("company_id: bad_shop\nsources: []\n")
    # saved in GBK by an editor: a broken DAG of its own, not an import error hiding the others
    (companies / "gbk-shop.yaml").write_bytes("company_id: gbk_shop\nname_zh: 某某培训学校\n".encode("gbk"))
    monkeypatch.setenv("DEREG_COMPANIES_DIR", str(companies))
    from dereg.dagfactory import build_all

    dags = build_all()
    assert set(dags) == {"closure__demo_academy", "closure__bad_shop", "closure__gbk_shop"}
    assert "broken-manifest" in dags["closure__bad_shop"].tags
    assert "broken-manifest" in dags["closure__gbk_shop"].tags
    assert os.environ["DEREG_COMPANIES_DIR"] == str(companies)


def test_recovery_drill_runs_quarterly(dagbag):
    import datetime as dt

    from airflow.timetables.trigger import CronTriggerTimetable

    dag = dagbag.dags["recovery_drill"]
    assert set(dag.task_ids) == {"retained_backups", "drill", "drill_report"}
    assert dag.timetable.expression == "0 3 1 1,4,7,10 *"
    core = CronTriggerTimetable(dag.timetable.expression, timezone="UTC")
    runs = []
    after = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    for _ in range(4):
        after = core._get_next(after)
        runs.append(after.strftime("%Y-%m-%d %H:%M"))
    assert runs == ["2027-01-01 03:00", "2027-04-01 03:00", "2027-07-01 03:00", "2027-10-01 03:00"]


def test_retention_sweep_runs_daily(dagbag):
    dag = dagbag.dags["retention_sweep"]
    assert set(dag.task_ids) == {"expired_backups", "destroy_backup", "final_certificates"}
    assert dag.timetable.expression == "0 4 * * *"
    assert {"s3_conn_id", "smtp_conn_id"} <= set(dag.params)


def test_key_rotation_follows_the_policy(dagbag):
    dag = dagbag.dags["key_rotation"]
    assert dag.task_ids == ["rotate_kek", "rewrap_keys", "destroy_retired_keks"]
    assert dag.timetable.expression == "0 2 1 1 *"  # include/policy/keys.yaml: yearly
    assert dag.params["grace_days"] == 30 and dag.params["rotate"] is True


def test_operations_stage_table_matches_the_closure_dag():
    """docs/operations.md's stage table names every task of the closure DAG, in order, and its
    "refuses unless the ledger shows" column lists exactly the stages each task's gate checks."""
    import re

    from dereg.dagfactory import build_closure_dag

    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## The stages", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        task_id = re.match(r"`([a-z_]+)`", cells[0]).group(1)
        documented[task_id] = set(re.findall(r"`([a-z_]+)`", cells[2].split("(")[0]))

    dag = build_closure_dag(ROOT / "include" / "companies" / "demo-academy.yaml")
    assert set(documented) == set(dag.task_ids)
    for task in dag.tasks:
        # the ledger stages the task's gate checks
        required = set(getattr(getattr(task, "operator_class", type(task)), "requires", ()))
        assert documented[task.task_id] == required, (
            f"{task.task_id}: the docs say {sorted(documented[task.task_id])}, the gate checks {sorted(required)}"
        )


def test_every_closure_stage_records_its_task_id_in_the_ledger():
    """The ledger's stage names are the task ids, so `requires=("x",)` and a reader of the ledger
    mean the task the operator sees in the grid; every stage a gate requires is a task of the DAG."""
    from dereg.dagfactory import build_broken_dag, build_closure_dag
    from dereg.errors import ManifestError

    dag = build_closure_dag(ROOT / "include" / "companies" / "demo-academy.yaml")
    stages = {}
    for task in dag.tasks:
        operator = getattr(task, "operator_class", type(task))
        if not getattr(operator, "stage", None):
            continue  # a plain @task would write no ledger entry
        assert operator.stage == task.task_id, f"task {task.task_id} records stage {operator.stage!r}"
        stages[task.task_id] = operator
    assert {"preflight", "classify", "classification_report", "approve", "erase", "certificate"} <= set(
        stages
    )
    for task_id, operator in stages.items():
        assert set(operator.requires) <= set(stages), f"{task_id} requires a stage that is no task"
    broken = build_broken_dag(ROOT / "include" / "companies" / "demo-academy.yaml", ManifestError("x", ["p"]))
    assert [(t.task_id, t.stage) for t in broken.tasks] == [("preflight", "preflight")]
