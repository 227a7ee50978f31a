"""The pieces of `dereg init`'s draft that need no database: words of names, subject ranking,
references by column name, and the rendered draft (placeholders, no values)."""

from __future__ import annotations

import yaml

from dereg.inventory.draft import Draft, name_references, propose, rank_subjects, tokens
from dereg.model import ClassificationResult, ColumnFinding, ColumnInfo, Link, SourceInventory, TableInfo


def _table(name, columns, rows=100, pk=("id",)):
    return TableInfo(
        name=name,
        schema=None,
        columns=[ColumnInfo(c, "VARCHAR(40)", primary_key=c in pk) for c in columns],
        primary_key=list(pk),
        row_count=rows,
    )


def _finding(table, column, *categories):
    return ColumnFinding(table, column, list(categories), "general", 100, 90, ["a***"], "values")


INVENTORY = SourceInventory(
    "shop",
    "sqlite",
    [
        _table("t_member", ["id", "nick", "mobile", "email"], rows=2000),
        _table("t_member_login_log", ["id", "memberId", "ip"], rows=9000),
        _table("t_admin", ["id", "name", "email"], rows=3000),
        _table("t_order", ["id", "member_id", "receiver_name"], rows=4000),
        _table("t_order_item", ["id", "order_id", "sku"], rows=6000),
        _table("t_order_setting", ["id", "timeout"], rows=1),
        _table("t_site", ["id", "hotline"], rows=1),
    ],
)
CLASSIFIED = ClassificationResult(
    "shop",
    [
        _finding("t_member", "nick", "name"),
        _finding("t_member", "mobile", "cn_mobile"),
        _finding("t_member", "email", "email"),
        _finding("t_member_login_log", "ip", "ip_address"),
        _finding("t_admin", "name", "name"),
        _finding("t_admin", "email", "email"),
        _finding("t_order", "receiver_name", "name"),
        _finding("t_site", "hotline", "cn_mobile"),
    ],
    sample_size=500,
)


def test_tokens_read_every_naming_convention():
    assert tokens("memberId") == tokens("member_id") == tokens("MEMBER_ID") == ["member", "id"]
    assert tokens("学员_id") == ["学员", "id"]


def test_column_names_refer_to_tables_with_or_without_their_prefix():
    refs = {(r.table, r.column): r.ref_table for r in name_references(INVENTORY)}
    assert refs == {
        ("t_member_login_log", "memberId"): "t_member",
        ("t_order", "member_id"): "t_member",
        ("t_order_item", "order_id"): "t_order",
    }


def test_the_subject_table_is_the_one_named_so_and_referred_to():
    ranked = rank_subjects(INVENTORY, CLASSIFIED, [], name_references(INVENTORY))
    assert ranked[0].table == "t_member"
    assert ranked[0].referred_by == 2 and ranked[0].name_word == "member"
    # more rows and personal columns do not outrank the name and the references
    assert [c.table for c in ranked].index("t_admin") > 0


def test_a_declared_link_counts_like_a_reference():
    links = [Link("t_admin", ["id"], "t_site", ["id"])]
    ranked = rank_subjects(INVENTORY, CLASSIFIED, links)
    site = next(c for c in ranked if c.table == "t_site")
    assert site.referred_by == 1


def test_the_rendered_draft_has_placeholders_and_comments_only_names():
    refs = name_references(INVENTORY)
    ranked = rank_subjects(INVENTORY, CLASSIFIED, [], refs)
    draft = Draft("shop", "sqlite:///shop.db", INVENTORY, CLASSIFIED, [], ranked, "t_member")
    draft.notify = {
        "table": "t_member",
        "email_column": "email",
        "name_column": "nick",
        "link_column": "id",
        "share": "90 of 100 sampled values are e-mail addresses",
    }
    draft.retain = [("t_order", "order")]
    draft.undecided = {"t_site": {"hotline": ["cn_mobile"]}}
    text = draft.render()
    document = yaml.safe_load(text)
    source = document["sources"][0]
    assert source["subject_table"] == "t_member"
    assert source["retain"] == [
        {"table": "t_order", "law": "TODO: the law and article", "years": "TODO", "action": "pseudonymize"}
    ]
    assert document["company_id"].startswith("TODO")
    assert "#   - {table: t_site, action: erase" in text
    assert "#     - {table: t_site, column: hotline, personal: false" in text
    assert "a***" not in text  # masked examples are not written either


def test_the_proposal_follows_links_partitions_and_keeps_accounting_records():
    tables = [*INVENTORY.tables, _table("t_order_2026", ["id", "member_id", "receiver_name"], rows=50)]
    tables[-1].partition_of = "t_order"
    inventory = SourceInventory("shop", "sqlite", tables)
    classified = ClassificationResult(
        "shop", [*CLASSIFIED.columns, _finding("t_order_2026", "receiver_name", "name")], sample_size=500
    )
    inferred = Link(
        "t_order", ["member_id"], "t_member", ["id"], kind="inferred",
        evidence={"rule": "member_id", "non_null": 4000, "matched": 4000, "containment": 1.0},
    )  # fmt: skip
    asked = []
    draft = propose(inventory, classified, lambda subject: asked.append(subject) or [inferred])
    assert asked == ["t_member"] and draft.subject_table == "t_member"
    # linked by the inferred link; order items and the login log by their column names only
    assert set(draft.linked) == {"t_order"}  # a partition goes with its table
    assert set(draft.by_name) == {"t_order_item", "t_member_login_log"}
    # accounting records tied to the subjects, not the order settings nor a partition
    assert [t for t, _ in draft.retain] == ["t_order", "t_order_item"]
    # personal data of tables not linked: the admin's, the site's, and the login log's (by name only)
    assert set(draft.undecided) == {"t_admin", "t_site", "t_member_login_log"}
    assert draft.notify["table"] == "t_member" and draft.notify["link_column"] == "id"
    text = draft.render()
    assert "t_order(member_id) -> t_member(id) [inferred: containment 1.0, matched 4000" in text
    assert "#   - {table: t_order_item, columns: [order_id], references: t_order" in text
