"""The erasure plan from hand-made inventories: which tables go, in which order, and its hash."""

from __future__ import annotations

import pytest

from dereg.erase.plan import ErasurePlan, RetainRule, build_plan
from dereg.errors import ErasureError
from dereg.model import (
    ClassificationResult,
    ColumnFinding,
    ColumnInfo,
    ForeignKey,
    SourceInventory,
    TableInfo,
)

ACCOUNTING = RetainRule("accounting_records", "pseudonymize", "会计档案管理办法 第十四条", 30)


def _table(name, columns, fks=(), rows=10, pk=("id",)):
    cols = [ColumnInfo("id", "INTEGER", False, True)] if "id" in pk else []
    cols += [ColumnInfo(c, "VARCHAR(20)", True, c in pk, 20) for c in columns]
    return TableInfo(name, None, cols, list(pk), [ForeignKey([c], t, ["id"]) for c, t in fks], rows)


def school(extra=()):
    tables = [
        _table("guardians", ["name", "mobile"], rows=30),
        _table("students", ["name", "id_number", "guardian_id"], [("guardian_id", "guardians")], rows=50),
        _table("courses", ["title"], rows=4),
        _table(
            "contracts",
            ["student_id", "course_id", "payer_bank_card"],
            [("student_id", "students"), ("course_id", "courses")],
            rows=60,
        ),
        _table(
            "attendance",
            ["student_id", "course_id"],
            [("student_id", "students"), ("course_id", "courses")],
            rows=120,
        ),
        _table("notes", ["student_id", "body"], [("student_id", "students")], rows=25),
        _table("accounting_records", ["voucher_no", "payer_name", "payer_mobile"], rows=40),
        _table("leads", ["name", "mobile"], rows=15),
        *extra,
    ]
    personal = {
        "guardians": {"name", "mobile"},
        "students": {"name", "id_number"},
        "contracts": {"payer_bank_card"},
        "notes": {"body"},
        "accounting_records": {"payer_mobile", "payer_name"},
        "leads": {"name", "mobile"},
    }
    findings = [
        ColumnFinding(t.name, c.name, ["x"] if c.name in personal.get(t.name, ()) else [], None)
        for t in tables
        for c in t.columns
    ]
    return SourceInventory("school_db", "sqlite", tables), ClassificationResult("school_db", findings)


LEADS = {"leads": ("erase", "marketing leads of the closing school, not kept")}


def plan_of(inventory, classification, retain=(ACCOUNTING,), decisions=LEADS, **kw):
    return build_plan(
        company_id="demo_academy",
        inventory=inventory,
        classification=classification,
        subject_table="students",
        retain=list(retain),
        decisions=decisions,
        **kw,
    )


def test_actions_reasons_and_order():
    plan = plan_of(*school())
    assert [(t.table, t.action) for t in plan.tables] == [
        ("accounting_records", "pseudonymize"),
        ("attendance", "delete"),
        ("contracts", "delete"),
        ("leads", "delete"),
        ("notes", "delete"),
        ("courses", "keep"),
        ("students", "delete"),
        ("guardians", "delete"),
    ]
    att = plan.action("attendance")
    assert att.columns == [] and att.rows == 120 and att.key == ["id"]
    assert att.reason == "rows linked to the customers through attendance(student_id) -> students(id)"
    assert att.scope == "linked" and att.rows_total == 120
    assert att.via == [
        {
            "columns": ["student_id"],
            "table": "students",
            "schema": None,
            "name": "students",
            "ref_columns": ["id"],
        }
    ]
    assert att.links[0]["kind"] == "declared"
    acc = plan.action("accounting_records")
    # in the table's column order, whatever order classification listed them in
    assert acc.columns == ["payer_name", "payer_mobile"] and acc.column_lengths == {
        "payer_name": 20,
        "payer_mobile": 20,
    }
    assert "30 years" in acc.reason
    assert plan.action("students").reason == "the customers (subject table)"
    assert plan.action("courses").reason.startswith("no personal columns")


def test_transitive_children_go_too():
    grand = _table("attendance_photos", ["attendance_id"], [("attendance_id", "attendance")], rows=3)
    plan = plan_of(*school([grand]))
    assert plan.action("attendance_photos").action == "delete"
    order = [t.table for t in plan.tables]
    assert order.index("attendance_photos") < order.index("attendance") < order.index("students")


def test_summary():
    summary = plan_of(*school()).summary()
    assert summary["counts"] == {"delete": 6, "pseudonymize": 1, "keep": 1}
    assert summary["rows_to_delete"] == 30 + 50 + 60 + 120 + 25 + 15
    assert summary["rows_to_pseudonymize"] == 40
    assert summary["tables"]["keep"] == ["courses"]
    assert summary["pseudonymize"] == {
        "accounting_records": {"rows": 40, "columns": ["payer_name", "payer_mobile"]}
    }


def test_hash_is_deterministic_and_survives_json():
    inventory, classification = school()
    plan = plan_of(inventory, classification)
    shuffled = SourceInventory("school_db", "sqlite", list(reversed(inventory.tables)))
    again = plan_of(shuffled, ClassificationResult("school_db", list(reversed(classification.columns))))
    assert plan.plan_hash == again.plan_hash == plan.compute_hash()
    assert len(plan.plan_hash) == 64
    copy = ErasurePlan.from_dict(plan.to_dict())
    assert copy == plan and copy.compute_hash() == plan.plan_hash


def test_hash_changes_with_an_action():
    inventory, classification = school()
    plan = plan_of(inventory, classification)
    kept_leads = plan_of(inventory, classification, [ACCOUNTING, RetainRule("leads", "keep", "合同法", 3)])
    assert kept_leads.action("leads").action == "keep"
    assert kept_leads.plan_hash != plan.plan_hash
    plan.action("courses").action = "delete"  # tampering after the hash was taken
    assert plan.compute_hash() != plan.plan_hash


def test_retain_keep_keeps_personal_columns_as_they_are():
    plan = plan_of(*school(), [RetainRule("accounting_records", "keep", "税收征收管理法", 10)])
    acc = plan.action("accounting_records")
    assert acc.action == "keep" and "as they are" in acc.reason


@pytest.mark.parametrize(
    ("retain", "message"),
    [
        ([RetainRule("ledger", "pseudonymize", "law", 30)], "do not exist in source school_db: ['ledger']"),
        ([RetainRule("accounting_records", "shred", "law", 30)], "unknown actions"),
        ([RetainRule("students", "keep", "law", 3)], "subject table students is also in the retain list"),
    ],
)
def test_bad_retain_rules(retain, message):
    with pytest.raises(ErasureError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_of(*school(), retain)


def test_a_retained_table_referring_to_deleted_rows_makes_them_pseudonymized():
    linked = _table("invoices", ["student_id", "payer_name"], [("student_id", "students")])
    inventory, classification = school([linked])
    plan = plan_of(inventory, classification, [ACCOUNTING, RetainRule("invoices", "pseudonymize", "law", 30)])
    invoices, students = plan.action("invoices"), plan.action("students")
    assert (invoices.action, invoices.scope) == ("keep", "linked")  # no personal column classified
    # the students the invoices refer to stay (the foreign key would refuse the delete), pseudonymized
    assert (students.action, students.scope) == ("pseudonymize", "all")
    assert students.columns == ["name", "id_number"]
    assert "rows kept in invoices refer to it by foreign key" in students.reason
    # their other children still lose their linked rows
    assert plan.action("notes").action == "delete"


def test_a_retained_parent_is_not_deleted():
    # contracts (deleted) point at a retained price list: the price list must stay
    price_list = _table("price_list", ["title", "owner_mobile"])
    inventory, classification = school([price_list])
    inventory.table("contracts").foreign_keys.append(ForeignKey(["course_id"], "price_list", ["id"]))
    classification.columns.append(ColumnFinding("price_list", "owner_mobile", ["cn_mobile"], "general"))
    plan = plan_of(
        inventory, classification, [ACCOUNTING, RetainRule("price_list", "pseudonymize", "law", 5)]
    )
    assert plan.action("price_list").action == "pseudonymize"
    order = [t.table for t in plan.tables]
    assert order.index("contracts") < order.index("price_list")


def test_missing_subject_table_and_primary_key():
    inventory, classification = school()
    with pytest.raises(ErasureError, match="subject table 'pupils' does not exist"):
        build_plan(
            company_id="c",
            inventory=inventory,
            classification=classification,
            subject_table="pupils",
            retain=[],
        )
    no_pk = _table("sms_log", ["mobile"], pk=())
    inventory, classification = school([no_pk])
    classification.columns.append(ColumnFinding("sms_log", "mobile", ["cn_mobile"], "general"))
    erased = plan_of(inventory, classification, decisions={**LEADS, "sms_log": ("erase", "old SMS log")})
    assert erased.action("sms_log").one_statement and "one statement" in erased.action("sms_log").reason
    with pytest.raises(ErasureError, match="sms_log has no primary key"):
        plan_of(inventory, classification, decisions={**LEADS, "sms_log": ("pseudonymize", "old SMS log")})


def test_classification_of_another_source_is_refused():
    inventory, classification = school()
    classification.source_id = "crm"
    with pytest.raises(ErasureError, match="classification is of source crm"):
        plan_of(inventory, classification)


# --- issue 18, item 11: an unreadable table is never planned as keep silently


def test_a_table_classification_could_not_read_fails_the_plan_naming_it():
    inventory, classification = school([_table("ledger_notes", ["memo"], rows=9)])
    classification.problems.append({"table": "ledger_notes", "reason": "OperationalError (error code 1054)"})
    with pytest.raises(ErasureError) as failed:
        plan_of(inventory, classification)
    message = str(failed.value)
    assert "ledger_notes (OperationalError (error code 1054))" in message
    assert "could not be read" in message and "classify.keep_unreadable" in message


def test_a_table_inventory_could_not_count_fails_the_plan():
    inventory, classification = school([_table("secrets", ["memo"], rows=0)])
    inventory.table("secrets").problem = "rows cannot be counted (InsufficientPrivilege)"
    with pytest.raises(ErasureError, match=r"secrets \(rows cannot be counted"):
        plan_of(inventory, classification)


def test_the_manifest_may_keep_an_unreadable_table_with_its_reason():
    inventory, classification = school([_table("ledger_notes", ["memo"], rows=9)])
    classification.problems.append({"table": "ledger_notes", "reason": "unreadable"})
    plan = build_plan(
        company_id="demo_academy",
        inventory=inventory,
        classification=classification,
        subject_table="students",
        retain=[ACCOUNTING],
        decisions=LEADS,
        keep_unreadable={"ledger_notes": "a vendor's log without customer data, checked by hand"},
    )
    action = plan.action("ledger_notes")
    assert action.action == "keep"
    assert action.reason == (
        "could not be read; kept as the manifest decides: a vendor's log without customer data, checked by hand"
    )


def test_an_unreadable_table_the_plan_deletes_anyway_needs_no_decision():
    inventory, classification = school(
        [_table("student_logs", ["student_id", "memo"], [("student_id", "students")], rows=9)]
    )
    classification.problems.append({"table": "student_logs", "reason": "unreadable"})
    assert plan_of(inventory, classification).action("student_logs").action == "delete"


# --- issue 18, item 3: tables are schema-qualified in the plan


def test_a_same_named_table_in_another_schema_is_another_table():
    inventory, classification = school()
    archived = TableInfo(
        "notes",
        "archive",
        [ColumnInfo("id", "INTEGER", False, True), ColumnInfo("ref", "INTEGER")],
        ["id"],
        [],
        7,
    )
    plain = TableInfo("orders", None, [ColumnInfo("id", "INTEGER", False, True)], ["id"], [], 5)
    linked = TableInfo(
        "orders",
        "archive",
        [ColumnInfo("id", "INTEGER", False, True), ColumnInfo("student_id", "INTEGER")],
        ["id"],
        [ForeignKey(["student_id"], "students", ["id"])],
        6,
    )
    inventory.tables += [archived, plain, linked]
    plan = plan_of(inventory, classification)
    assert (plan.action("orders").action, plan.action("orders").ident) == ("keep", (None, "orders"))
    assert (plan.action("archive.orders").action, plan.action("archive.orders").ident) == (
        "delete",
        ("archive", "orders"),
    )
    # public notes hold personal data; archive.notes neither holds any nor links to anything
    assert plan.action("notes").action == "delete" and plan.action("archive.notes").action == "keep"


def test_a_foreign_key_to_another_schemas_same_named_table_is_not_a_link():
    inventory, classification = school()
    other = TableInfo("students", "archive", [ColumnInfo("id", "INTEGER", False, True)], ["id"], [], 3)
    child = TableInfo(
        "essays",
        None,
        [ColumnInfo("id", "INTEGER", False, True), ColumnInfo("sid", "INTEGER")],
        ["id"],
        [ForeignKey(["sid"], "students", ["id"], ref_schema="archive")],
        4,
    )
    inventory.tables += [other, child]
    plan = plan_of(inventory, classification)
    assert plan.action("essays").action == "keep"
    assert plan.action("archive.students").action == "keep"


def test_two_tables_shown_with_the_same_name_are_refused():
    inventory, classification = school()
    inventory.tables += [
        TableInfo("x.y", None, [ColumnInfo("id", "INTEGER", False, True)], ["id"], [], 1),
        TableInfo("y", "x", [ColumnInfo("id", "INTEGER", False, True)], ["id"], [], 1),
    ]
    with pytest.raises(ErasureError, match=r"tables \['x.y'\] cannot be told apart"):
        plan_of(inventory, classification)
