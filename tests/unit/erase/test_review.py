"""The plan as the approver reads it (`dereg.erase.review`): plan.html and the approval text show,
per table, rows deleted / pseudonymized / left out of the table's rows, the link to the subjects
(declared, or inferred with its evidence), partitions and undecided personal data; the certificate
lists the inferred links. Built from a hand-made plan; no personal value anywhere."""

from __future__ import annotations

from types import SimpleNamespace

from dereg.certify import CITED_STAGES, build_certificate_body
from dereg.erase.objects import ObjectErasurePlan
from dereg.erase.plan import ErasurePlan, TableAction
from dereg.erase.review import approval_lines, inferred_links, render_plan_html, write_plan_html

INFERRED = {
    "link": "oms_order(member_id) -> ums_member(id)",
    "kind": "inferred",
    "evidence": {"rule": "member_id names ums_member", "non_null": 3977, "matched": 3977, "containment": 1.0},
}


def _plan() -> ErasurePlan:
    member = TableAction(
        "ums_member", "delete", 2000, ["nickname", "phone"], ["id"], "the customers", name="ums_member"
    )
    member.rows_total = 2000
    order = TableAction(
        "oms_order",
        "pseudonymize",
        3900,
        ["receiver_name", "receiver_phone"],
        ["id"],
        "kept 30 years by 会计档案管理办法",
        name="oms_order",
        scope="linked",
        rows_total=3977,
        links=[INFERRED],
        via=[
            {
                "columns": ["member_id"],
                "table": "ums_member",
                "schema": None,
                "name": "ums_member",
                "ref_columns": ["id"],
            }
        ],
    )
    log = TableAction(
        "login_log_2026",
        "delete",
        700,
        ["ip"],
        ["id"],
        "linked rows of the subjects",
        name="login_log_2026",
        scope="linked",
        rows_total=1000,
        partition_of="login_log",
        links=[{"link": "login_log_2026(member_id) -> ums_member(id)", "kind": "declared", "evidence": {}}],
    )
    catalogue = TableAction("pms_product", "keep", 120, [], ["id"], "no personal columns", name="pms_product")
    plan = ErasurePlan(
        "mall_co",
        "shop_db",
        "mysql",
        "ums_member",
        [log, order, member, catalogue],
        undecided=[{"table": "cms_site<settings>", "columns": {"hotline": ["cn_mobile"]}, "rows": 3}],
    )
    plan.plan_hash = plan.compute_hash()
    return plan


def _objects() -> ObjectErasurePlan:
    return ObjectErasurePlan(
        "mall_co", "uploads", "mall-files", "uploads", "delete", 12, 3456, ["a (jpg)"], plan_hash="cd" * 32
    )


def test_plan_html_shows_each_table_its_link_and_the_undecided_data(tmp_path):
    plan = _plan()
    page = write_plan_html(
        tmp_path,
        {"shop_db": plan, "uploads": _objects()},
        company_id="mall_co",
        name_zh="商城",
        name_en="Mall",
        run_id="manual__1",
        plan_hash="ab" * 32,
        dry_run=True,
    )
    text = page.read_text(encoding="utf-8")
    assert page.name == "plan.html"
    assert "ab" * 32 in text and plan.plan_hash in text
    assert "删除 / delete" in text and "假名化 / pseudonymize" in text  # Chinese first
    # per table: acted rows, rows left as they are, the table's rows
    order = text[text.index("<code>oms_order</code>") :].split("</tr>")[0]
    assert ">0<" in order and ">3900<" in order and ">77<" in order and ">3977<" in order
    assert "oms_order(member_id) -&gt; ums_member(id)" in order
    assert "推断 / inferred" in order
    assert "rule member_id names ums_member" in order and "3977 of 3977 values are keys" in order
    assert "containment 1.0" in order
    log = text[text.index("<code>login_log_2026</code>") :].split("</tr>")[0]
    assert "partition of <code>login_log</code>" in log and ">700<" in log and ">300<" in log
    assert "外键 / declared" in log
    # undecided data, escaped
    assert "cms_site&lt;settings&gt;" in text and "<code>hotline</code> (cn_mobile)" in text
    assert "decisions:" in text
    assert "pms_product" in text  # kept tables are listed too
    assert "s3://mall-files/uploads" in text and "演练" in text


def test_the_approval_text_gives_per_table_counts_inferred_links_and_undecided_items():
    lines = "\n".join(
        approval_lines({"shop_db": _plan(), "uploads": _objects()}, "/out/mall_co/manual__1/plan.html")
    )
    assert "delete 2700 rows" in lines and "pseudonymize 3900 rows" in lines
    assert "1 inferred link(s)" in lines and "1 undecided table(s)" in lines
    assert (
        "`oms_order`: pseudonymize 3900 of 3977 rows via oms_order(member_id) -> ums_member(id) (inferred)"
        in lines
    )
    assert "`login_log_2026`: delete 700 of 1000 rows, partition of `login_log`" in lines
    assert "UNDECIDED / 待决定 `cms_site<settings>`: personal columns hotline" in lines
    assert "/out/mall_co/manual__1/plan.html" in lines
    assert "uploads" in lines and "12 objects" in lines


def test_a_plan_without_the_new_fields_still_renders():
    old = ErasurePlan(
        "c", "db", "sqlite", "students", [TableAction("students", "delete", 5, ["name"], ["id"], "x")]
    )
    text = render_plan_html({"db": old}, company_id="c", name_zh="z", name_en="e", run_id="r", plan_hash="h")
    row = text[text.index('<tr class="delete"><td><code>students</code>') :].split("</tr>")[0]
    assert ">5<" in row and "数据主体 / the subjects" in row
    assert "UNDECIDED" not in "\n".join(approval_lines({"db": old}))


def test_the_certificate_lists_the_inferred_links_and_the_residual_risks():
    plan = _plan()
    entry = SimpleNamespace(details={}, ts="2026-12-31T00:00:00", actor="approver", entry_id=1, hash="h")
    manifest = SimpleNamespace(
        sources=[SimpleNamespace(id="shop_db")],
        object_sources=[],
        name_zh="商城",
        name_en="Mall",
        legal_basis="PIPL Art. 47",
        backup=SimpleNamespace(bucket="b", prefix="p"),
    )
    run = SimpleNamespace(
        succeeded=lambda stage: entry,
        manifest=manifest,
        dry_run=True,
        company_id="mall_co",
        run_id="r",
        reason="closing",
        triggered_by="ops",
        ledger=SimpleNamespace(head=lambda: entry),
    )
    assert CITED_STAGES
    body = build_certificate_body(run, source_urls={"shop_db": {"type": "mysql"}}, plans={"shop_db": plan})
    store = body["stores"][0]
    assert store["inferred_links"] == [
        {"table": "oms_order", "link": INFERRED["link"], "evidence": INFERRED["evidence"]}
    ]
    assert store["residual_risks"]
    assert inferred_links(plan) == store["inferred_links"]
