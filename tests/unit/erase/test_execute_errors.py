"""Tokens, and the errors of execute_plan: they name table and batch, never a value (SQLite in memory)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from dereg.erase.execute import execute_plan, is_token, token
from dereg.erase.plan import ErasurePlan, TableAction
from dereg.errors import ErasureError

KEY = b"s" * 32


def test_token_shape():
    t = token(KEY, "accounting_records", "payer_name", "张三")
    expected = hmac.new(KEY, "accounting_records.payer_name\0张三".encode(), hashlib.sha256).hexdigest()[:16]
    assert t == "tok_" + expected and len(t) == 20 and is_token(t)
    assert token(KEY, "accounting_records", "payer_name", "张三") == t  # deterministic
    assert token(KEY, "accounting_records", "payer_mobile", "张三") != t  # per column
    assert token(b"o" * 32, "accounting_records", "payer_name", "张三") != t  # per key
    assert token(KEY, "a", "b", "v", length=10) == token(KEY, "a", "b", "v")[:10]
    assert len(token(KEY, "a", "b", "v", length=8)) == 8
    assert token(KEY, "a", "b", "v", length=7) is None
    assert not is_token(None) and not is_token("tokyo")


def _engine(ddl: list[str]) -> sa.Engine:
    engine = sa.create_engine("sqlite://", poolclass=StaticPool)
    with engine.begin() as conn:
        for statement in ddl:
            conn.exec_driver_sql(statement)
    return engine


def _plan(*actions: TableAction) -> ErasurePlan:
    plan = ErasurePlan("c", "src", "sqlite", "leads", list(actions))
    plan.plan_hash = plan.compute_hash()
    return plan


def test_database_error_names_table_and_batch_but_no_value():
    engine = _engine(
        [
            "CREATE TABLE leads (id INTEGER PRIMARY KEY, mobile VARCHAR(20))",
            "INSERT INTO leads VALUES (1, '13812345678'), (2, '13912345678'), (3, '13712345678')",
            # refuses the second batch, quoting a personal value as a careless trigger might
            "CREATE TRIGGER no_delete BEFORE DELETE ON leads WHEN old.id = 3 "
            "BEGIN SELECT RAISE(ABORT, 'cannot delete 13712345678'); END",
        ]
    )
    lines: list[str] = []
    plan = _plan(TableAction("leads", "delete", 3, ["mobile"], ["id"], "personal"))
    with pytest.raises(ErasureError) as info:
        execute_plan(engine, plan, pseudonym_key=KEY, batch_size=2, progress=lines.append)
    message = str(info.value)
    assert "delete of src.leads failed in batch 2 (2 rows done before it)" in message
    assert "13712345678" not in message and "run the task again to resume" in message
    assert lines == ["leads: 2/3 rows deleted (batch 1)"]
    with engine.connect() as conn:  # batch 1 stays committed
        assert conn.exec_driver_sql("SELECT id FROM leads").scalars().all() == [3]


def test_tampered_plan_is_refused():
    engine = _engine(["CREATE TABLE leads (id INTEGER PRIMARY KEY, mobile VARCHAR(20))"])
    plan = _plan(TableAction("leads", "keep", 0, [], ["id"], "x"))
    plan.tables[0].action = "delete"
    with pytest.raises(ErasureError, match="does not match its hash"):
        execute_plan(engine, plan, pseudonym_key=KEY)


def test_column_that_can_hold_neither_token_nor_null_is_refused_before_any_change():
    engine = _engine(
        [
            "CREATE TABLE ledger (id INTEGER PRIMARY KEY, payer VARCHAR(20), born DATE NOT NULL)",
            "INSERT INTO ledger VALUES (1, 'A', '2015-01-01')",
        ]
    )
    plan = _plan(TableAction("ledger", "pseudonymize", 1, ["payer", "born"], ["id"], "kept"))
    with pytest.raises(ErasureError, match=r"column ledger\.born \(DATE\) can hold neither a token nor NULL"):
        execute_plan(engine, plan, pseudonym_key=KEY)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT payer FROM ledger").scalar() == "A"


def test_schema_changed_after_planning():
    engine = _engine(["CREATE TABLE ledger (id INTEGER PRIMARY KEY, payer VARCHAR(20))"])
    plan = _plan(TableAction("ledger", "pseudonymize", 1, ["payer_name"], ["id"], "kept"))
    with pytest.raises(ErasureError, match=r"no column\(s\) \['payer_name'\]"):
        execute_plan(engine, plan, pseudonym_key=KEY)
    plan = _plan(TableAction("gone", "delete", 1, [], ["id"], "x"))
    with pytest.raises(ErasureError, match="delete of src.gone: the table does not exist"):
        execute_plan(engine, plan, pseudonym_key=KEY)


def test_composite_key_pseudonymize_in_batches():
    engine = _engine(
        [
            "CREATE TABLE pay (a INTEGER, b INTEGER, name VARCHAR(12), PRIMARY KEY (a, b))",
            "INSERT INTO pay VALUES " + ", ".join(f"({i % 3}, {i}, 'n{i}')" for i in range(10)),
            "INSERT INTO pay VALUES (9, 9, NULL), (9, 10, 'tok_already')",
        ]
    )
    plan = _plan(TableAction("pay", "pseudonymize", 12, ["name"], ["a", "b"], "kept"))
    lines: list[str] = []
    assert execute_plan(engine, plan, pseudonym_key=KEY, batch_size=4, progress=lines.append) == {"pay": 10}
    assert lines[-1] == "pay: 10/12 rows pseudonymized (batch 3)"
    with engine.connect() as conn:
        names = dict(((a, b), n) for a, b, n in conn.exec_driver_sql("SELECT a, b, name FROM pay"))
    assert names[(1, 4)] == token(KEY, "pay", "name", "n4", 12) and len(names[(1, 4)]) == 12
    assert names[(9, 9)] is None and names[(9, 10)] == "tok_already"
    assert execute_plan(engine, plan, pseudonym_key=KEY, batch_size=4) == {"pay": 0}


def test_copy_text_escapes_what_copy_would_misread():
    from dereg.dialects.postgresql import _copy_text

    assert _copy_text(None) == "\\N"
    assert _copy_text(42) == "42"
    assert _copy_text("a\tb\nc\\d\re") == "a\\tb\\nc\\\\d\\re"
    assert _copy_text("tok_0123456789abcdef") == "tok_0123456789abcdef"
