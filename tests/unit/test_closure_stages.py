"""The closure's stage functions, called in order as the operators call them, without Airflow: a
small SQLite school inventoried, classified in units, reported, planned, gated, erased, purged and
verified, with the run's artifacts in a SQLite compliance store."""

from __future__ import annotations

import json
import os

import pytest
import sqlalchemy as sa

from dereg.backup.archive import table_digests
from dereg.classify.cn_resident_id import calc_check_digit
from dereg.classify.report import merge_parts, report_classification
from dereg.classify.units import classify_unit
from dereg.connectors import Connectors
from dereg.erase.gate import LedgerFacts, approval_hash, check_erase_gate
from dereg.erase.sources import erase_preview, erase_sources, plan_sources, purge_sources, verify_sources
from dereg.errors import GateError
from dereg.evidence.ledger import Ledger
from dereg.evidence.run_artifacts import RunArtifacts
from dereg.evidence.store import open_store
from dereg.inventory.sources import classification_units, inventory_sources
from dereg.manifest import load_manifest
from dereg.model import ClassificationResult, ColumnFinding, SourceInventory, TableInfo
from tests.dags.harness import ROOT

STUDENTS = 30


class Log:
    """Collects what a stage logs, formatted as the task log would show it."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args) -> None:
        self.lines.append(msg % args)

    warning = info

    def progress(self, line: str) -> None:
        self.lines.append(line)


def _resident_id(i: int) -> str:
    body = f"110101{2016 + i % 4}0{1 + i % 9}1{i % 10}{100 + i:03d}"[:17]
    return body + calc_check_digit(body)


def _school(url: str) -> None:
    engine = sa.create_engine(url)
    md = sa.MetaData()
    guardians = sa.Table(
        "guardians",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40)),
        sa.Column("email", sa.String(80)),
        sa.Column("mobile", sa.String(20)),
    )
    students = sa.Table(
        "students",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(40)),
        sa.Column("id_number", sa.String(18)),
        sa.Column("guardian_id", sa.Integer, sa.ForeignKey("guardians.id")),
    )
    accounts = sa.Table(
        "accounting_records",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("student_no", sa.Integer),  # no foreign key: kept rows may not block deletion
        sa.Column("payer_name", sa.String(40)),
        sa.Column("amount", sa.Integer),
    )
    courses = sa.Table(
        "courses", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.String(40))
    )
    md.create_all(engine)
    surnames, given = "王李张刘陈杨赵黄周吴", "伟芳娜敏静丽强磊军洋"
    with engine.begin() as conn:
        conn.execute(
            guardians.insert(),
            [
                {
                    "id": i,
                    "name": surnames[i % 10] + given[(i * 3) % 10] + given[i % 7],
                    "email": f"parent{i}@example.com",
                    "mobile": f"138{i:08d}",
                }
                for i in range(1, STUDENTS + 1)
            ],
        )
        conn.execute(
            students.insert(),
            [
                {
                    "id": i,
                    "name": surnames[(i + 3) % 10] + given[i % 10],
                    "id_number": _resident_id(i),
                    "guardian_id": i,
                }
                for i in range(1, STUDENTS + 1)
            ],
        )
        conn.execute(
            accounts.insert(),
            [
                {
                    "id": i,
                    "student_id": i,
                    "payer_name": surnames[i % 10] + given[(i * 3) % 10],
                    "amount": 100 * i,
                }
                for i in range(1, STUDENTS + 1)
            ],
        )
        conn.execute(courses.insert(), [{"id": 1, "title": "钢琴"}, {"id": 2, "title": "围棋"}])
    engine.dispose()


@pytest.fixture
def closure(tmp_path):
    url = f"sqlite:///{tmp_path / 'school.db'}"
    _school(url)
    manifest = load_manifest(ROOT / "include" / "companies" / "demo-academy.yaml")
    asked: list[str] = []

    def engine(conn_id: str):
        asked.append(conn_id)
        return sa.create_engine(url)

    def no_objects(source):
        raise AssertionError("the demo manifest has no object source")

    class C:
        pass

    c = C()
    c.url, c.manifest, c.asked, c.out = url, manifest, asked, tmp_path / "out"
    c.artifacts = RunArtifacts(
        open_store(f"sqlite:///{tmp_path / 'store.db'}"), manifest.company_id, "manual__1"
    )
    c.connectors = Connectors(engine=engine, object_client=no_objects)
    c.log = Log()
    return c


def _count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def _backed_up(url: str, plan) -> dict[str, dict]:
    """Table -> {"rows", "sha256"} as the catalog records them for a backup of `url` taken now."""
    engine = sa.create_engine(url)
    try:
        digests = table_digests(engine, [t.ident for t in plan.tables])
    finally:
        engine.dispose()
    return {t.table: {"rows": digests[t.ident][0], "sha256": digests[t.ident][1]} for t in plan.tables}


def test_a_closure_runs_stage_by_stage_without_airflow(closure):
    c, log = closure, closure.log
    found = inventory_sources(c.manifest, c.artifacts, connectors=c.connectors, log=log)
    assert (
        found["sources"]["school_db"]["tables"] == 4
        and found["sources"]["school_db"]["rows"] == 3 * STUDENTS + 2
    )
    assert [u["index"] for u in found["units"]] == list(range(len(found["units"]))) == [0]
    links = c.artifacts.inventory("school_db").links  # the links travel with the inventory
    assert links and found["sources"]["school_db"]["links"]["declared"] == len(links)
    assert any(line.startswith("Links of school_db: ") for line in log.lines)
    assert c.artifacts.units() == found["units"] and c.asked == ["demo_academy_db"]

    parts = [
        classify_unit(u, c.manifest, c.artifacts, connectors=c.connectors, log=log, progress=log.progress)
        for u in c.artifacts.units()
    ]
    assert parts[0]["artifact"] == "classification.part.school_db.0" and parts[0]["personal_columns"] >= 4

    report = report_classification(
        c.manifest, c.artifacts, connectors=c.connectors, output_dir=c.out, log=log
    )
    assert report["sources"]["school_db"]["subjects"] == STUDENTS
    assert (c.out / "classification.json").is_file() and (c.out / "classification.html").is_file()
    classification = c.artifacts.classification("school_db")
    personal = {(f.table, f.column) for f in classification.columns if f.personal}
    assert {("guardians", "email"), ("guardians", "mobile"), ("students", "id_number")} <= personal

    planned = plan_sources(c.manifest, c.artifacts, log=log, connectors=c.connectors)
    plans = c.artifacts.plans(c.manifest)
    assert planned["plan_hash"] == approval_hash(plans)
    assert plans["school_db"].action("accounting_records").action == "pseudonymize"
    assert erase_preview(plans, c.manifest, c.connectors)["would"]["school_db"]["rows_to_delete"] >= STUDENTS

    ledger = Ledger(c.artifacts.store)
    ledger.append(company_id="c", run_id="r", stage="restore_verify", event="succeeded", actor="ops")
    approved = {"decision": "approved", "plan_hash": planned["plan_hash"]}
    ledger.append(
        company_id="c", run_id="r", stage="approve", event="succeeded", actor="approver", details=approved
    )
    facts = LedgerFacts.gather(ledger.entries(company_id="c", run_id="r"), ledger.verify().ok)
    check_erase_gate(
        facts.approval,
        plans,
        triggered_by="ops",
        pending_requests={},
        approvers={"approver"},
        ledger=facts,
        company_id="c",
        run_id="r",
    )

    recorded: dict = {}
    erased = erase_sources(
        c.manifest,
        plans,
        connectors=c.connectors,
        pseudonym_key=os.urandom(32),
        # what a backup of this source taken now records: rows and content hash
        backed_up={"school_db": _backed_up(c.url, plans["school_db"])},
        resumed=False,
        log=log,
        progress=log.progress,
        record_subject_keys=recorded.__setitem__,
    )
    assert erased["objects"] == {} and "school_db" in erased["rows"]
    assert recorded["school_db"]["columns"] == ["id"] and len(recorded["school_db"]["values"]) == STUDENTS
    assert _count(c.url, "students") == 0 and _count(c.url, "accounting_records") == STUDENTS
    assert _count(c.url, "courses") == 2
    assert "school_db" in purge_sources(c.manifest, plans, connectors=c.connectors, log=log)["purge"]
    verified = verify_sources(c.manifest, plans, connectors=c.connectors, subject_keys=recorded)
    assert verified["verification"]["school_db"]["ok"] is True
    # every engine asked for is the source's; nothing personal reached the log
    assert set(c.asked) == {"demo_academy_db"}
    text = "\n".join(log.lines) + json.dumps([found, parts, report, planned, erased, verified], default=str)
    assert "parent1@example.com" not in text and "13800000001" not in text and _resident_id(1) not in text


def test_the_units_split_large_tables_and_keep_the_rest_together():
    tables = [TableInfo(name, None, [], [], [], rows) for name, rows in (("a", 10), ("big", 900), ("c", 5))]
    inventory = SourceInventory(source_id="db", dialect="sqlite", tables=tables)
    assert [u["tables"] for u in classification_units("db", inventory, 100)] == [["big"], ["a", "c"]]
    assert classification_units("db", inventory, 100)[1]["label"] == "db (other 2 tables)"
    assert classification_units("db", inventory, 10_000) == [
        {"source": "db", "kind": "sql", "tables": ["a", "big", "c"], "label": "db"}
    ]


def test_parts_merge_in_unit_order_with_their_problems():
    def finding(table):
        return ColumnFinding(table, "name", ["name"], "general", 10, 9, [], "names")

    first = ClassificationResult("db", [finding("big")], mode="sample", sample_size=500)
    second = ClassificationResult("db", [finding("a")], problems=[{"table": "c", "reason": "no permission"}])
    merged = merge_parts("db", [first, second])
    assert [f.table for f in merged.columns] == ["big", "a"]
    assert merged.problems == [{"table": "c", "reason": "no permission"}]
    assert (merged.mode, merged.sample_size) == ("sample", 500)


def test_a_missing_part_names_its_unit_and_what_to_do(closure):
    c = closure
    inventory_sources(c.manifest, c.artifacts, connectors=c.connectors, log=c.log)
    with pytest.raises(Exception, match=r"classification of school_db is missing .* \(map index 0\)"):
        report_classification(c.manifest, c.artifacts, connectors=c.connectors, output_dir=c.out, log=c.log)


def test_an_artifact_a_stage_has_not_written_is_a_gate_error(closure):
    with pytest.raises(
        GateError, match="artifact 'plan.school_db' of company demo_academy run manual__1 is missing"
    ):
        closure.artifacts.plans(closure.manifest)


def test_the_retry_delay_comes_from_the_environment_and_a_bad_value_says_so(monkeypatch):
    from dereg import config

    monkeypatch.delenv("DEREG_RETRY_DELAY_SECONDS", raising=False)
    assert config.retry_delay_seconds() == 30
    monkeypatch.setenv("DEREG_RETRY_DELAY_SECONDS", "2.5")
    assert config.retry_delay_seconds() == 2.5
    for bad in ("soon", "-1"):
        monkeypatch.setenv("DEREG_RETRY_DELAY_SECONDS", bad)
        with pytest.raises(ValueError, match="DEREG_RETRY_DELAY_SECONDS"):
            config.retry_delay_seconds()
