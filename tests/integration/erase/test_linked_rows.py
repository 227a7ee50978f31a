"""Erase and verify per subject row on real PostgreSQL and MariaDB (issue 15): only the rows linked
to the subjects go, unlinked rows stay, kept tables keep every row, a cascade into a kept table is
refused before anything changes, and verification honours the manifest's overrides.

A small shop with no foreign keys between its tables (links given as the inventory's inferred
links, as on the mall pack): members (the subjects), their logins, their orders (kept by law,
pseudonymized), the orders' history (linked through the orders), products and site settings whose
hotline the manifest declares not personal."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dereg.classify.engine import full_scan_hits
from dereg.erase.execute import KeptRowsAtRisk, execute_plan
from dereg.erase.plan import RetainRule, build_plan
from dereg.erase.selection import count_selected
from dereg.erase.sources import subject_keys
from dereg.erase.verify import verify_erasure
from dereg.inventory.sql import inventory_source
from dereg.model import ClassificationResult, ColumnFinding, Link

pytestmark = pytest.mark.integration

KEY = b"k" * 32
HOTLINE = "13912345678"
NOT_PERSONAL = {("settings", "hotline")}  # the manifest's override: the shop's own number


@pytest.fixture(params=["postgresql", "mariadb"])
def engine(request):
    url = request.getfixturevalue({"postgresql": "pg_url", "mariadb": "mariadb_url"}[request.param])
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


def _create(engine: sa.Engine) -> None:
    rows = {
        "member": [(i, f"nick{i}", f"1380000000{i}") for i in range(1, 7)],
        # logins of each member, two with no member and two of a member that does not exist
        "login_log": [(i, i if i <= 6 else (None if i <= 8 else 99), f"device-{i}") for i in range(1, 11)],
        "orders": [
            (i, i if i <= 6 else None, f"1390000000{i}" if i <= 6 else "walk-in", 10 * i) for i in range(1, 9)
        ],
        "order_history": [(i, i if i <= 8 else 99, "shipped") for i in range(1, 10)],
        # messages between members: either end may be an erased member
        "message": [(1, 1, 99, "hi"), (2, 99, 2, "hello"), (3, 98, 97, "staff"), (4, None, None, "system")],
        "product": [(i, f"product {i}") for i in range(1, 5)],
        "settings": [(1, HOTLINE)],
    }
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE member (id int PRIMARY KEY, nickname varchar(40), phone varchar(20))"
        )
        conn.exec_driver_sql("CREATE TABLE login_log (id int PRIMARY KEY, member_id int, device varchar(40))")
        conn.exec_driver_sql(
            "CREATE TABLE orders (id int PRIMARY KEY, member_id int, receiver_phone varchar(20), total int)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE order_history (id int PRIMARY KEY, order_id int, note varchar(40))"
        )
        conn.exec_driver_sql(
            "CREATE TABLE message (id int PRIMARY KEY, from_id int, to_id int, body varchar(40))"
        )
        conn.exec_driver_sql("CREATE TABLE product (id int PRIMARY KEY, title varchar(40))")
        conn.exec_driver_sql("CREATE TABLE settings (id int PRIMARY KEY, hotline varchar(20))")
        for table, values in rows.items():
            marks = ", ".join(["%s"] * len(values[0]))
            for row in values:
                conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({marks})", row)


def _link(table, column, ref):
    return Link(table, [column], ref, ["id"], "inferred", {"rule": "name", "containment": 1.0})


def _plan(engine: sa.Engine):
    inventory = inventory_source(engine, "shop")
    inventory.links = [
        _link("login_log", "member_id", "member"),
        _link("orders", "member_id", "member"),
        _link("order_history", "order_id", "orders"),
        _link("message", "from_id", "member"),
        _link("message", "to_id", "member"),
    ]
    personal = {("member", "nickname"), ("member", "phone"), ("orders", "receiver_phone")}
    findings = [
        ColumnFinding(t.name, c.name, ["cn_mobile"] if (t.name, c.name) in personal else [], None)
        for t in inventory.tables
        for c in t.columns
    ]
    plan = build_plan(
        company_id="shop",
        inventory=inventory,
        classification=ClassificationResult("shop", findings),
        subject_table="member",
        retain=[RetainRule("orders", "pseudonymize", "会计档案管理办法", 30)],
    )
    return count_selected(engine, plan)


def _ids(engine: sa.Engine, table: str) -> list[int]:
    with engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql(f"SELECT id FROM {table} ORDER BY id")]


def test_only_linked_rows_go_kept_tables_keep_every_row_and_verify_honours_the_override(engine):
    _create(engine)
    plan = _plan(engine)
    assert {t.table: (t.action, t.rows, t.rows_total) for t in plan.tables} == {
        "member": ("delete", 6, 6),
        "login_log": ("delete", 6, 10),
        "orders": ("pseudonymize", 6, 8),
        "order_history": ("delete", 6, 9),
        "message": ("delete", 2, 4),
        "product": ("keep", 4, 4),
        "settings": ("keep", 1, 1),
    }
    keys = subject_keys(engine, plan)
    assert keys == {"table": "member", "columns": ["id"], "values": [[i] for i in range(1, 7)]}

    done = execute_plan(engine, plan, pseudonym_key=KEY, batch_size=2)
    assert {t: done[t] for t in ("member", "login_log", "order_history")} == dict.fromkeys(
        ("member", "login_log", "order_history"), 6
    )
    assert _ids(engine, "member") == []
    assert _ids(engine, "login_log") == [7, 8, 9, 10]  # no member, or a member that does not exist
    assert _ids(engine, "order_history") == [7, 8, 9]  # orders of nobody, or no such order
    assert _ids(engine, "message") == [3, 4]  # neither end is a member
    assert _ids(engine, "orders") == list(range(1, 9)) and len(_ids(engine, "product")) == 4
    with engine.connect() as conn:
        phones = dict(conn.exec_driver_sql("SELECT id, receiver_phone FROM orders").all())
    assert all(phones[i].startswith("tok_") for i in range(1, 7))
    assert phones[7] == phones[8] == "walk-in"
    assert set(execute_plan(engine, plan, pseudonym_key=KEY, batch_size=2).values()) == {0}

    after = inventory_source(engine, "shop")
    hits = full_scan_hits(engine, after)
    assert hits.get(("settings", "hotline")) == 1  # the shop's own number is found by the scan
    verified = verify_erasure(engine, plan, after, hits, not_personal=NOT_PERSONAL, subject_keys=keys)
    assert verified.ok, verified.problems
    assert verified.tables["login_log"]["rows_linked_to_erased_subjects"] == 0
    assert verified.tables["message"]["rows_linked_to_erased_subjects"] == 0
    assert verified.tables["login_log"]["rows"] == verified.tables["login_log"]["expected_rows"] == 4
    assert verified.tables["product"]["ok"] and verified.tables["settings"]["rows"] == 1
    assert verified.tables["orders"]["values_not_pseudonymized"] == {"receiver_phone": 0}

    # without the override, the scan's find is a problem: verification follows the manifest
    strict = verify_erasure(engine, plan, after, hits, subject_keys=keys)
    assert strict.problems == ["settings.hotline: the full scan still finds 1 personal values"]


def test_verification_catches_a_linked_row_left_and_a_kept_row_lost(engine):
    _create(engine)
    plan = _plan(engine)
    keys = subject_keys(engine, plan)
    execute_plan(engine, plan, pseudonym_key=KEY, batch_size=3)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO login_log VALUES (50, 3, 'device-50')")  # a row of erased member 3
        conn.exec_driver_sql("INSERT INTO message VALUES (50, 97, 4, 'to erased member 4')")
        conn.exec_driver_sql("DELETE FROM product WHERE id = 4")
    verified = verify_erasure(engine, plan, inventory_source(engine, "shop"), {}, subject_keys=keys)
    problems = "\n".join(verified.problems)
    assert "login_log: 1 rows still linked to erased subjects (by key)" in problems
    assert "login_log: 5 rows left, the plan leaves 4" in problems
    assert "product: 3 rows now, the plan keeps 4" in problems
    assert "message: 1 rows still linked to erased subjects (by key)" in problems


def test_a_cascade_into_a_kept_table_is_refused_before_anything_changes(engine):
    _create(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE audit (id int PRIMARY KEY, member_id int, "
            "FOREIGN KEY (member_id) REFERENCES member (id) ON DELETE CASCADE)"
        )
        conn.exec_driver_sql("INSERT INTO audit VALUES (1, 1), (2, 2), (3, NULL)")
    plan = _plan(engine)  # the given links do not know the audit table's key: it is kept as it is
    assert plan.action("audit").action == "keep" and plan.action("member").action == "delete"
    before = {t.table: len(_ids(engine, t.table)) for t in plan.tables}
    with pytest.raises(KeptRowsAtRisk) as refused:
        execute_plan(engine, plan, pseudonym_key=KEY, batch_size=2)
    message = str(refused.value)
    assert "audit (planned to keep): 2 rows refer by foreign key (member_id, ON DELETE CASCADE)" in message
    assert "Nothing was erased" in message
    assert {t.table: len(_ids(engine, t.table)) for t in plan.tables} == before


def test_rows_the_subjects_refer_to_are_found_again_by_a_retry_after_the_subjects_are_gone(school):
    import copy

    from dereg.erase.execute import referenced_values

    plan = school.plan()
    guardians = plan.action("guardians")
    assert (guardians.action, guardians.scope, guardians.via[0]["direction"]) == (
        "delete",
        "linked",
        "referenced",
    )
    held = referenced_values(school.engine, plan)  # what erase records before it changes anything
    # a first try that stopped after the students were deleted, before their guardians
    first = copy.deepcopy(plan)
    first.action("guardians").action = "keep"
    first.plan_hash = first.compute_hash()
    execute_plan(school.engine, first, pseudonym_key=KEY, batch_size=7)
    assert school.count("students") == 0 and school.count("guardians") == school.sizes["guardians"]
    # the retry cannot see which guardians were the students' any more, the record can
    assert referenced_values(school.engine, plan)["guardians"]["values"] == []
    done = execute_plan(school.engine, plan, pseudonym_key=KEY, batch_size=7, referenced=held)
    verified = verify_erasure(school.engine, plan, school.inventory(), {}, subject_keys={"referenced": held})
    assert verified.tables["guardians"]["rows_linked_to_erased_subjects"] == 0
    assert (
        done["guardians"] == guardians.rows
        and school.count("guardians") == school.sizes["guardians"] - guardians.rows
    )
