"""The manifest's overrides reach verification, and a wrong one is caught at plan time."""

from __future__ import annotations

from dereg.erase.plan import build_plan
from dereg.erase.sources import not_personal_columns, override_problems
from dereg.manifest.models import ColumnOverride, SourceSpec
from dereg.model import ClassificationResult, ColumnFinding, ColumnInfo, SourceInventory, TableInfo


def _source(*overrides) -> SourceSpec:
    return SourceSpec(
        id="shop_db", conn_id="shop", subject_table="member", classify={"overrides": list(overrides)}
    )


def test_overrides_saying_not_personal_are_what_verification_leaves():
    source = _source(
        ColumnOverride(table="settings", column="hotline", personal=False, reason="the shop's own number"),
        ColumnOverride(table="orders", column="note", categories=[], reason="free text checked by hand"),
        ColumnOverride(table="orders", column="phone", categories=["cn_mobile"], reason="receivers' phones"),
    )
    assert not_personal_columns(source) == {("settings", "hotline"), ("orders", "note")}


def test_an_override_naming_a_missing_table_or_column_is_caught_before_the_erase():
    tables = [
        TableInfo("member", None, [ColumnInfo("id", "INTEGER", False, True)], ["id"], [], 3),
        TableInfo(
            "settings",
            None,
            [ColumnInfo("id", "INTEGER", False, True), ColumnInfo("hotline", "TEXT")],
            ["id"],
        ),
    ]
    inventory = SourceInventory("shop_db", "sqlite", tables)
    plan = build_plan(
        company_id="shop",
        inventory=inventory,
        classification=ClassificationResult("shop_db", [ColumnFinding("member", "id", [], None)]),
        subject_table="member",
        retain=[],
    )
    wrong = {("settings", "hotline"), ("settings", "phone"), ("config", "hotline")}
    assert override_problems(plan, inventory, wrong) == [
        "config.hotline: the source has no table config",
        "settings.phone: table settings has no column phone",
    ]
