"""The plan per subject row (issue 15), from hand-made inventories shaped like real schemas:
partitions, kept tables referring to deleted rows, cascades, tables the subjects refer to,
personal data with no link (undecided) and the manifest's decisions, links without foreign keys."""

from __future__ import annotations

import pytest

from dereg.erase.plan import ErasurePlan, RetainRule, build_plan, referenced_first
from dereg.erase.review import approval_lines
from dereg.errors import ErasureError
from dereg.model import (
    ClassificationResult,
    ColumnFinding,
    ColumnInfo,
    ForeignKey,
    Link,
    SourceInventory,
    TableInfo,
)

PAYMENTS = RetainRule("payment", "pseudonymize", "会计档案管理办法", 30)


def _table(name, columns, fks=(), rows=10, pk=("id",), **kw):
    cols = [ColumnInfo("id", "INTEGER", False, True)] if "id" in pk else []
    cols += [ColumnInfo(c, "VARCHAR(40)", True, c in pk, 40) for c in columns]
    keys = [ForeignKey([c], t, ["id"], on_delete=rule) for c, t, rule in fks]
    return TableInfo(name, None, cols, list(pk), keys, rows, **kw)


def _classified(tables, personal):
    findings = [
        ColumnFinding(t.name, c.name, ["x"] if c.name in personal.get(t.name, ()) else [], None)
        for t in tables
        for c in t.columns
    ]
    return ClassificationResult("rentals", findings)


def rentals():
    """pagila's shape: customers refer to addresses shared with staff and stores; rentals and the
    partitions of a partitioned payment table refer to customers; the last partition has no key."""
    tables = [
        _table("address", ["address", "phone"], rows=603),
        _table("staff", ["address_id", "username"], [("address_id", "address", "RESTRICT")], rows=15),
        _table("store", ["address_id"], [("address_id", "address", "RESTRICT")], rows=5),
        _table("inventory", ["store_id"], [("store_id", "store", "RESTRICT")], rows=40),
        _table(
            "customer",
            ["first_name", "email", "address_id", "store_id"],
            [("address_id", "address", "RESTRICT"), ("store_id", "store", "RESTRICT")],
            rows=599,
        ),
        _table(
            "rental",
            ["customer_id", "inventory_id", "staff_id"],
            [
                ("customer_id", "customer", "RESTRICT"),
                ("inventory_id", "inventory", "RESTRICT"),
                ("staff_id", "staff", "RESTRICT"),
            ],
            rows=1600,
        ),
        _table("payment", ["customer_id", "rental_id", "amount"], rows=0, partitioned=True),
        _table(
            "payment_p1",
            ["customer_id", "rental_id", "amount"],
            [("customer_id", "customer", None), ("rental_id", "rental", None)],
            rows=700,
            partition_of="payment",
        ),
        _table("payment_p2", ["customer_id", "rental_id", "amount"], rows=900, partition_of="payment"),
    ]
    personal = {"address": {"address", "phone"}, "customer": {"first_name", "email"}}
    return SourceInventory("rentals", "postgresql", tables), _classified(tables, personal)


def plan(inventory, classification, retain=(PAYMENTS,), subject="customer", **kw) -> ErasurePlan:
    return build_plan(
        company_id="video",
        inventory=inventory,
        classification=classification,
        subject_table=subject,
        retain=list(retain),
        **kw,
    )


def test_kept_payments_keep_the_customers_and_rentals_they_refer_to_pseudonymized():
    p = plan(*rentals())
    got = {t.table: (t.action, t.scope) for t in p.tables}
    assert got == {
        "customer": ("pseudonymize", "all"),
        "address": ("pseudonymize", "linked"),
        "rental": ("pseudonymize", "linked"),
        "payment": ("keep", "all"),
        "payment_p1": ("keep", "linked"),
        "payment_p2": ("keep", "linked"),  # no key of its own: its parent's links (as pagila's _07)
        "staff": ("keep", "all"),
        "store": ("keep", "all"),
        "inventory": ("keep", "all"),
    }
    customer, rental = p.action("customer"), p.action("rental")
    assert customer.columns == ["first_name", "email"]
    assert "rows kept in payment_p1 refer to it by foreign key" in customer.reason
    assert rental.columns == [] and "rows kept in payment_p1 refer to it" in rental.reason
    # the partition carries its parent's rule; the parent holds no rows and is not counted twice
    assert (
        "kept 30 years" in p.action("payment_p1").reason and "kept 30 years" in p.action("payment_p2").reason
    )
    parent = p.action("payment")
    assert parent.partitioned and parent.rows == parent.rows_total == 0
    assert p.action("payment_p1").partition_of == "payment"
    assert p.summary()["rows_to_delete"] == 0


def test_a_table_the_subjects_refer_to_and_others_share_is_pseudonymized_in_place():
    address = plan(*rentals()).action("address")
    assert (address.action, address.scope) == ("pseudonymize", "linked")
    assert address.columns == ["address", "phone"]
    assert address.via == [
        {
            "columns": ["id"],
            "table": "customer",
            "schema": None,
            "name": "customer",
            "ref_columns": ["address_id"],
            "direction": "referenced",
        }
    ]
    assert "staff, store refer to the table too" in address.reason


def test_without_kept_payments_the_customers_rows_and_their_rentals_go():
    inventory, classification = rentals()
    p = plan(inventory, classification, retain=())
    assert (p.action("customer").action, p.action("customer").scope) == ("delete", "all")
    assert (p.action("rental").action, p.action("rental").scope) == ("delete", "linked")
    # the partitions follow the link on their own; the parent is never acted on
    assert (p.action("payment_p1").action, p.action("payment_p1").scope) == ("delete", "linked")
    assert p.action("payment").action == "keep"
    # the stores and staff rentals refer to are not the customers' data
    assert p.action("staff").action == "keep" and p.action("inventory").action == "keep"
    order = [t.table for t in p.tables]
    assert order.index("payment_p1") < order.index("rental") < order.index("customer")
    # address is read through customer: it is pseudonymized before the customers go
    assert order.index("address") < order.index("customer")


def test_a_cascade_into_a_kept_table_turns_the_delete_into_pseudonymization():
    inventory, classification = rentals()
    inventory.tables.append(
        _table("loyalty_ledger", ["customer_id", "points"], [("customer_id", "customer", "CASCADE")], rows=50)
    )
    retain = [PAYMENTS, RetainRule("loyalty_ledger", "keep", "税收征收管理法", 10)]
    inventory.table("payment_p1").foreign_keys = []  # only the ledger protects the customers now
    p = plan(inventory, classification, retain=retain)
    assert p.action("customer").action == "pseudonymize"
    assert "loyalty_ledger(customer_id) -> customer(id), ON DELETE CASCADE" in p.action("customer").reason


def test_rows_only_the_subjects_refer_to_are_deleted_after_them():
    tables = [
        _table("guardians", ["name", "mobile"], rows=30),
        _table("students", ["name", "guardian_id"], [("guardian_id", "guardians", None)], rows=50),
    ]
    inventory = SourceInventory("rentals", "sqlite", tables)
    classification = _classified(tables, {"guardians": {"name", "mobile"}, "students": {"name"}})
    p = plan(inventory, classification, retain=(), subject="students")
    guardians = p.action("guardians")
    assert (guardians.action, guardians.scope) == ("delete", "linked") and referenced_first(guardians)
    assert "referred to by nothing else" in guardians.reason
    order = [t.table for t in p.tables]
    assert order.index("students") < order.index("guardians")  # the foreign key wants it so


def test_personal_data_with_no_link_stops_a_real_run_and_is_listed_in_a_dry_run():
    inventory, classification = rentals()
    inventory.tables.append(_table("site_settings", ["hotline", "title"], rows=3))
    classification.columns.append(ColumnFinding("site_settings", "hotline", ["cn_mobile"], "general"))
    with pytest.raises(ErasureError) as failed:
        plan(inventory, classification)
    message = str(failed.value)
    assert "site_settings (3 rows): hotline [cn_mobile]" in message
    assert "decisions:" in message and "personal: false" in message and "dry run" in message
    dry = plan(inventory, classification, allow_undecided=True)
    assert dry.undecided == [{"table": "site_settings", "columns": {"hotline": ["cn_mobile"]}, "rows": 3}]
    assert dry.action("site_settings").action == "keep" and "undecided" in dry.action("site_settings").reason
    assert dry.summary()["undecided"] == dry.undecided
    assert ErasurePlan.from_dict(dry.to_dict()) == dry


def test_the_manifest_decides_erase_or_pseudonymize_every_row():
    inventory, classification = rentals()
    inventory.tables.append(_table("site_settings", ["hotline", "title"], rows=3))
    classification.columns.append(ColumnFinding("site_settings", "hotline", ["cn_mobile"], "general"))
    erased = plan(inventory, classification, decisions={"site_settings": ("erase", "old site")})
    assert (erased.action("site_settings").action, erased.action("site_settings").scope) == ("delete", "all")
    assert "the manifest decides: erase every row (old site)" in erased.action("site_settings").reason
    tokens = plan(inventory, classification, decisions={"site_settings": ("pseudonymize", "kept pages")})
    assert tokens.action("site_settings").action == "pseudonymize"
    assert tokens.action("site_settings").columns == ["hotline"]
    assert erased.undecided == tokens.undecided == []
    # keep: staff accounts, the company's own contacts; verification leaves its values alone
    from dereg.erase.verify import left_on_purpose

    kept = plan(inventory, classification, decisions={"site_settings": ("keep", "the school's own hotline")})
    action = kept.action("site_settings")
    assert (action.action, action.decided, kept.undecided) == ("keep", "keep", [])
    assert "the school's own hotline" in action.reason and left_on_purpose(action, "hotline")
    assert not left_on_purpose(
        plan(inventory, classification, allow_undecided=True).action("site_settings"), "hotline"
    )


@pytest.mark.parametrize(
    ("decisions", "message"),
    [
        ({"settings": ("erase", "r")}, r"decisions name tables that do not exist: \['settings'\]"),
        ({"rental": ("erase", "r")}, r"decisions name tables linked to the subjects \['rental'\]"),
        ({"store": ("shred", "r")}, "unknown actions"),
    ],
)
def test_bad_decisions_are_clear_errors(decisions, message):
    with pytest.raises(ErasureError, match=message):
        plan(*rentals(), decisions=decisions)


def mall():
    """No foreign keys at all: members, their orders (kept by law) and the orders' lines and
    history, tied by inferred links; a settings table decided by an override (no personal column)."""
    tables = [
        _table("member", ["nickname", "phone"], rows=200),
        _table("orders", ["member_id", "receiver_name", "total"], rows=400),
        _table("order_item", ["order_id", "product"], rows=600),
        _table("order_history", ["order_id", "note"], rows=450),
        _table("login_log", ["member_id", "ip"], rows=1100),
        _table("product", ["title"], rows=38),
    ]

    def inferred(table, column, ref):
        return Link(table, [column], ref, ["id"], "inferred", {"rule": "name", "containment": 1.0})

    links = [
        inferred("orders", "member_id", "member"),
        inferred("order_item", "order_id", "orders"),
        inferred("order_history", "order_id", "orders"),
        inferred("login_log", "member_id", "member"),
    ]
    personal = {"member": {"nickname", "phone"}, "orders": {"receiver_name"}, "login_log": {"ip"}}
    inventory = SourceInventory("rentals", "mysql", tables, links)
    return inventory, _classified(tables, personal)


def test_links_without_foreign_keys_delete_linked_rows_and_keep_retained_ones():
    retain = [
        RetainRule("orders", "pseudonymize", "会计档案", 30),
        RetainRule("order_item", "keep", "会计档案", 30),
    ]
    p = plan(*mall(), retain=retain, subject="member")
    got = {t.table: (t.action, t.scope) for t in p.tables}
    assert got == {
        "member": ("delete", "all"),  # an inferred link is not enforced: the kept orders keep the id
        "orders": ("pseudonymize", "linked"),
        "order_item": ("keep", "linked"),
        "order_history": ("delete", "linked"),
        "login_log": ("delete", "linked"),
        "product": ("keep", "all"),
    }
    history = p.action("order_history")
    assert [h["table"] for h in history.via] == ["orders", "member"]
    assert [x["kind"] for x in history.links] == ["inferred", "inferred"]
    assert history.links[0]["evidence"]["rule"] == "name"
    assert "order_history(order_id) -> orders(id) -> orders(member_id) -> member(id)" in history.reason
    order = [t.table for t in p.tables]
    assert order.index("order_history") < order.index("orders") < order.index("member")
    row = next(r for r in p.summary()["per_table"] if r["table"] == "order_history")
    assert (
        row["link"]
        == "order_history(order_id) -> orders(id) (inferred) ; orders(member_id) -> member(id) (inferred)"
    )
    assert {k: row[k] for k in ("delete", "pseudonymize", "keep")} == {
        "delete": 450,
        "pseudonymize": 0,
        "keep": 0,
    }


def test_the_inventory_without_links_falls_back_to_declared_foreign_keys():
    inventory, classification = mall()
    inventory.links = []
    inventory.table("login_log").foreign_keys = [ForeignKey(["member_id"], "member", ["id"])]
    p = plan(
        inventory,
        classification,
        retain=[RetainRule("orders", "pseudonymize", "law", 30)],
        subject="member",
        allow_undecided=True,
    )
    assert (p.action("login_log").action, p.action("login_log").links[0]["kind"]) == ("delete", "declared")
    # the orders are not linked any more: kept by law, every row pseudonymized
    assert (p.action("orders").action, p.action("orders").scope) == ("pseudonymize", "all")


def test_the_approval_text_shows_rows_links_and_undecided_data_per_table():
    inventory, classification = mall()
    inventory.tables.append(_table("site_settings", ["hotline"], rows=3))
    classification.columns.append(ColumnFinding("site_settings", "hotline", ["cn_mobile"], "general"))
    p = plan(
        inventory,
        classification,
        retain=[RetainRule("orders", "pseudonymize", "会计档案", 30)],
        subject="member",
        allow_undecided=True,
    )
    text = "\n".join(approval_lines({"mall_db": p}))
    assert "`login_log`: delete 1100 of 1100 rows via login_log(member_id) -> member(id) (inferred)" in text
    assert "`product`" not in text and "table(s) kept" in text  # kept tables are counted, not listed
    assert "UNDECIDED / 待决定 `site_settings`: personal columns hotline" in text


def test_a_column_that_cannot_be_pseudonymized_is_caught_by_the_plan_not_the_erase():
    inventory, classification = mall()
    orders = inventory.table("orders")
    orders.columns.append(ColumnInfo("receiver_birth", "DATE", False))
    classification.columns.append(ColumnFinding("orders", "receiver_birth", ["birth_date"], "sensitive"))
    retain = [RetainRule("orders", "pseudonymize", "会计档案", 30)]
    with pytest.raises(ErasureError, match=r"orders\.receiver_birth \(DATE\) are to be pseudonymized"):
        plan(inventory, classification, retain=retain, subject="member", allow_undecided=True)


def test_a_table_linked_twice_to_the_subjects_takes_rows_either_link_reaches():
    inventory, classification = mall()
    inventory.tables.append(_table("message", ["from_id", "to_id", "body"], rows=80))
    inventory.links += [
        Link("message", ["from_id"], "member", ["id"], "inferred"),
        Link("message", ["to_id"], "member", ["id"], "inferred"),
    ]
    p = plan(inventory, classification, retain=[], subject="member", allow_undecided=True)
    message = p.action("message")
    assert [h["columns"] for h in message.via] == [["from_id"]]
    assert [[h["columns"] for h in c] for c in message.via_also] == [[["to_id"]]]
    assert [x["link"] for x in message.links] == [
        "message(from_id) -> member(id)",
        "message(to_id) -> member(id)",
    ]
    assert "; or message(to_id) -> member(id)" in message.reason
