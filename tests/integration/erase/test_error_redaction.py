"""Database errors reach the ledger and the task log as their class and SQLSTATE only (issue 18,
item 7).

A CHECK violation during pseudonymisation raised psycopg2's CheckViolation, whose DETAIL quotes the
failing row ("Failing row contains (..., Wang Xiuying (parent of Li Xiaolong), ...)"); `redact`
masks digits and e-mails only, so the name went into the ledger and the task log. Here a real CHECK
constraint on PostgreSQL fails the erase, through `execute_plan` and through the operators' failure
path, and neither the ledger nor the captured log nor the raised error holds any part of the row.
"""

from __future__ import annotations

import logging
import traceback
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from dereg.erase.execute import execute_plan
from dereg.erase.plan import ErasurePlan, TableAction
from dereg.errors import ErasureError
from dereg.evidence.ledger import Ledger
from dereg.evidence.store import open_store
from dereg.operators.base import ComplianceOperator, DatabaseFailure, RunContext

pytestmark = pytest.mark.integration

NAME = "Wang Xiuying"
ROW = f"{NAME} (parent of Li Xiaolong)"


def _source(pg_url: str) -> sa.Engine:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        # the token written into payer violates the CHECK; `memo` (not planned) carries the name
        conn.exec_driver_sql(
            "CREATE TABLE invoices (id int PRIMARY KEY, payer varchar(40) CHECK (left(payer, 4) <> 'tok_'), "
            "memo text)"
        )
        conn.execute(sa.text("INSERT INTO invoices VALUES (1, :p, :m)"), {"p": "Wang Xiuying", "m": ROW})
    return engine


def _plan() -> ErasurePlan:
    action = TableAction("invoices", "pseudonymize", 1, ["payer"], ["id"], "kept by law", {"payer": 40})
    plan = ErasurePlan("acme", "db", "postgresql", "customers", [action])
    plan.plan_hash = plan.compute_hash()
    return plan


def _everything(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_the_erase_error_names_the_class_and_sqlstate_not_the_row(pg_url):
    engine = _source(pg_url)
    try:
        with pytest.raises(ErasureError) as failed:
            execute_plan(engine, _plan(), pseudonym_key=b"k" * 32)
        text = _everything(failed.value)
        assert "CheckViolation (SQLSTATE 23514: check constraint violated)" in str(failed.value)
        assert "Xiuying" not in text and "Xiaolong" not in text and "Failing row" not in text
    finally:
        engine.dispose()


class _Failing(ComplianceOperator):
    stage = "erase"

    def __init__(self, *, run: RunContext, engine: sa.Engine, **kwargs) -> None:
        super().__init__(manifest_path="unused.yaml", task_id="erase", **kwargs)
        self._run, self._engine = run, engine

    def run_context(self, context) -> RunContext:
        return self._run

    def act(self, run: RunContext, context) -> dict:
        # a raw driver error, as a stage that writes through the driver would raise it
        raw = self._engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("UPDATE invoices SET payer = 'tok_0123456789abcdef'")
        finally:
            raw.close()
        return {}


def test_the_operators_failure_path_keeps_the_row_out_of_ledger_and_log(pg_url, tmp_path, caplog):
    engine = _source(pg_url)
    store = open_store(f"sqlite:///{tmp_path / 'compliance.db'}")
    try:
        run = RunContext(
            manifest=SimpleNamespace(company_id="acme"),
            run_id="r1",
            triggered_by="ops",
            dry_run=False,
            reason="closing",
            notice_window_days=0,
            store=store,
            ledger=Ledger(store),
        )
        operator = _Failing(run=run, engine=engine)
        with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseFailure) as failed:
            operator.execute({})
        # what Airflow prints when the task fails: the exception with its whole chain
        logging.getLogger("airflow.task").exception("Task failed", exc_info=failed.value)
        assert "CheckViolation (SQLSTATE 23514" in str(failed.value)
        entries = Ledger(store).entries(company_id="acme", run_id="r1")
        assert [e.event for e in entries] == ["started", "failed"]
        ledger_text = repr([e.to_dict() for e in entries])
        assert "CheckViolation (SQLSTATE 23514" in ledger_text
        for text in (ledger_text, caplog.text, _everything(failed.value)):
            assert "Xiuying" not in text and "Xiaolong" not in text and "Failing row" not in text
    finally:
        store.dispose()
        engine.dispose()
