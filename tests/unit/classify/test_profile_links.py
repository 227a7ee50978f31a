"""Which tables may hold a subject's birth date besides the subject table: those linked to it
one-to-one (the link's columns are the table's primary key or a unique key), by a declared foreign
key or an inventory link, each counted once."""

from __future__ import annotations

from dereg.classify.engine import profile_links
from dereg.model import ColumnInfo, ForeignKey, Link, SourceInventory, TableInfo


def _table(name, pk, *, fks=(), unique=None) -> TableInfo:
    info = TableInfo(name, None, [ColumnInfo(c, "INTEGER") for c in ("id", "user_id", "code")], list(pk))
    info.foreign_keys = list(fks)
    if unique is not None:  # the inventory's unique keys (TableInfo.unique_keys where present)
        info.unique_keys = unique
    return info


def test_one_to_one_tables_by_primary_key_or_unique_key():
    to_user = ForeignKey(["user_id"], "user", ["id"])
    inventory = SourceInventory(
        "s",
        "sqlite",
        [
            _table("user", ["id"]),
            _table("user_profile", ["user_id"], fks=[to_user]),  # declared, its primary key
            _table("user_identity", ["id"], unique=[["user_id"]]),  # inferred, a unique key
            _table("orders", ["id"], fks=[to_user]),  # many per user
            _table("user_code", ["code"], unique=[["code"]]),  # unique, but refers by another column
        ],
        links=[
            Link("user_identity", ["user_id"], "user", ["id"], kind="inferred"),
            Link("user_profile", ["user_id"], "user", ["id"], kind="inferred"),  # also declared
            Link("user_code", ["code"], "user", ["nickname"], kind="manifest"),
        ],
    )
    found = profile_links(inventory, inventory.table("user"))
    assert sorted(link.table for link in found) == ["user_identity", "user_profile"]
    assert profile_links(inventory, inventory.table("orders")) == []
