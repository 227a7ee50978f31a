"""The approval request's text carries the plan as the approver reads it: per-table counts, the
inferred links and undecided items, and where plan.html is (built by `dereg.erase.review`), each table
once."""

from __future__ import annotations

from types import SimpleNamespace

from dereg.erase.plan import ErasurePlan, TableAction
from dereg.erase.review import approval_lines
from dereg.operators.approval import ErasureApprovalOperator


def test_the_approval_text_has_the_tables_links_undecided_items_and_the_page():
    order = TableAction(
        "orders", "pseudonymize", 8, ["payer"], ["id"], "kept by law", scope="linked", rows_total=10,
        links=[{"link": "orders(uid) -> users(id)", "kind": "inferred", "evidence": {"rule": "uid"}}],
    )  # fmt: skip
    plan = ErasurePlan(
        "acme", "db", "sqlite", "users", [order], undecided=[{"table": "site", "columns": {"tel": ["phone"]}}]
    )
    plan.plan_hash = plan.compute_hash()
    run = SimpleNamespace(
        manifest=SimpleNamespace(name_zh="公司", name_en="Acme"),
        company_id="acme",
        triggered_by="ops",
        reason="closing",
    )
    body = ErasureApprovalOperator._body(
        run, "ab" * 32, plan_lines=approval_lines({"db": plan}, "/out/plan.html")
    )
    assert "`orders`: pseudonymize 8 of 10 rows via orders(uid) -> users(id) (inferred): kept by law" in body
    assert body.count("`orders`") == 1  # each table once (no second table of the same counts)
    assert "1 inferred link(s)" in body and "1 undecided table(s)" in body and "`site`" in body
    assert "/out/plan.html" in body and "ab" * 32 in body
