"""Link inference (dereg.inventory.links, dereg.inventory.names): the name rules in each
convention, value containment on a real SQLite file, chains, the decoy `user_id`, and the
manifest's `links:` (added, rejected, wrong)."""

from __future__ import annotations

import doctest

import pytest
import sqlalchemy as sa

import dereg.inventory.names as names
from dereg.errors import LinkError, SourceError
from dereg.inventory.links import (
    CONTAINMENT,
    declared_links,
    find_links,
    link_report,
    one_to_one,
    subject_paths,
)
from dereg.inventory.names import module_prefixes, role_of, table_stems, words
from dereg.inventory.sql import inventory_source
from dereg.manifest.models import LinkSpec
from dereg.model import ColumnInfo, ForeignKey, SourceInventory, TableInfo


def test_doctests_of_the_name_rules():
    assert doctest.testmod(names).failed == 0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("created_user_id", ("created", "user", "id")),  # snake
        ("createdUserId", ("created", "user", "id")),  # camel
        ("CreatedUserID", ("created", "user", "id")),  # Pascal, upper-case ID
        ("CREATED_USER_ID", ("created", "user", "id")),
        ("yonghu_id", ("user", "id")),  # pinyin
        ("huiyuanId", ("member", "id")),
        ("xuesheng_id", ("student", "id")),
        ("kehu_id", ("customer", "id")),
        ("用户ID", ("user", "id")),  # Chinese
        ("会员编号", ("member", "id")),
        ("学员_id", ("student", "id")),
        ("客户id", ("customer", "id")),
        ("users", ("user",)),  # plurals
        ("categories", ("category",)),
        ("addresses", ("address",)),
    ],
)
def test_words_bring_every_convention_to_one_form(name, expected):
    assert words(name) == expected


@pytest.mark.parametrize(
    ("table", "stem"),
    [
        ("ums_member", ("member",)),
        ("t_user", ("user",)),
        ("tb_user", ("user",)),
        ("sys_user", ("user",)),
        ("user_info", ("user",)),
        ("users", ("user",)),
        ("tb_users", ("user",)),
        ("t_yonghu", ("user",)),
        ("会员", ("member",)),
        ("customer", ("customer",)),
    ],
)
def test_table_stems_strip_prefixes_suffixes_and_plurals(table, stem):
    assert stem in table_stems(table, module_prefixes(["ums_member", "ums_role", "ums_menu"]))


def test_module_prefixes_are_shared_short_words_but_never_nouns():
    assert module_prefixes(["ums_member", "ums_role", "ums_menu", "oms_order"]) == {"ums"}
    # three tables about users do not make "user" a namespace
    assert module_prefixes(["user_info", "user_log", "user_tag"]) == set()


@pytest.mark.parametrize(
    ("column", "role"),
    [
        ("uid", ("uid",)),
        ("userId", ("user",)),
        ("fromId", ("from",)),
        ("toId", ("to",)),
        ("createdUserId", ("created", "user")),
        ("creator_id", ("creator",)),
        ("owner_id", ("owner",)),
        ("buyer_id", ("buyer",)),
        ("author_id", ("author",)),
        ("created_by", ("created", "by")),
        ("to_user_id", ("to", "user")),
        ("product_id", None),
        ("parent_id", None),
        ("id", None),
    ],
)
def test_role_columns_in_snake_and_camel_case(column, role):
    assert role_of(column) == role


# ---- a real SQLite source -----------------------------------------------------------------------

SCHEMA = """
CREATE TABLE cities (id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE users (id INTEGER PRIMARY KEY, city_id INTEGER, inviterId INTEGER, name TEXT);
CREATE TABLE user_profile (user_id INTEGER PRIMARY KEY, birthday TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, userId INTEGER, total INTEGER);
CREATE TABLE order_items (id INTEGER PRIMARY KEY, order_id INTEGER, qty INTEGER);
CREATE TABLE visits (id INTEGER PRIMARY KEY, user_id INTEGER);
CREATE TABLE clicks (id INTEGER PRIMARY KEY, user_id INTEGER);
CREATE TABLE coupons (id INTEGER PRIMARY KEY, user_id INTEGER, code TEXT);
CREATE TABLE messages (id INTEGER PRIMARY KEY, fromId INTEGER, toId INTEGER, createdUserId INTEGER);
CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER, title TEXT);
CREATE TABLE drafts (id INTEGER PRIMARY KEY, user_id INTEGER);
CREATE TABLE logins (id INTEGER PRIMARY KEY, user_id VARCHAR(20));
CREATE TABLE t_xuesheng (id INTEGER PRIMARY KEY, xingming TEXT);
CREATE TABLE kaoshi (id INTEGER PRIMARY KEY, xuesheng_id INTEGER);
CREATE TABLE "成绩" (id INTEGER PRIMARY KEY, "学员编号" INTEGER);
CREATE TABLE settings (id INTEGER PRIMARY KEY, value TEXT, owner_ref INTEGER);
CREATE TABLE vip_card (member_no VARCHAR(12) PRIMARY KEY, level INTEGER);
CREATE TABLE points (id INTEGER PRIMARY KEY, member_no VARCHAR(12), amount INTEGER);
CREATE TABLE accounts (uid INTEGER PRIMARY KEY);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, account_uid INTEGER);
CREATE TABLE refunds (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders(id) ON DELETE CASCADE,
                      serial TEXT UNIQUE);
"""

N = 100


def _insert(conn, table: str, rows: list[tuple]) -> None:
    marks = ", ".join("?" * len(rows[0]))
    conn.exec_driver_sql(f'INSERT INTO "{table}" VALUES ({marks})', rows)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("links") / "source.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        _insert(conn, "cities", [(i, f"c{i}") for i in range(1, 11)])
        _insert(conn, "users", [(i, 1 + i % 10, None if i < 3 else i - 1, f"n{i}") for i in range(1, N + 1)])
        _insert(conn, "user_profile", [(i, "2000-01-01") for i in range(1, N + 1)])
        _insert(conn, "orders", [(i, 1 + i % N, 10) for i in range(1, 201)])
        _insert(conn, "order_items", [(i, 1 + i % 200, 1) for i in range(1, 401)])
        # 95 of 100 values are user keys: accepted; 50 of 100: rejected
        _insert(conn, "visits", [(i, i if i <= 95 else 5000 + i) for i in range(1, 101)])
        _insert(conn, "clicks", [(i, i if i <= 50 else 5000 + i) for i in range(1, 101)])
        # the decoy: a user_id column holding a campaign's numbers, not users' keys
        _insert(conn, "coupons", [(i, 880000 + i, f"X{i}") for i in range(1, 101)])
        _insert(conn, "messages", [(i, 1 + i % N, 1 + (i * 7) % N, 1 + (i * 3) % N) for i in range(1, 51)])
        _insert(conn, "posts", [(i, 1 + i % N, f"t{i}") for i in range(1, 31)])
        _insert(conn, "drafts", [(i, None) for i in range(1, 11)])
        _insert(conn, "logins", [(i, str(1 + i % N)) for i in range(1, 61)])
        _insert(conn, "t_xuesheng", [(i, f"x{i}") for i in range(1, 21)])
        _insert(conn, "kaoshi", [(i, 1 + i % 20) for i in range(1, 41)])
        _insert(conn, "成绩", [(i, 1 + i % 20) for i in range(1, 41)])
        _insert(conn, "settings", [(i, "v", 1 + i % N) for i in range(1, 6)])
        _insert(conn, "vip_card", [(f"M{i:04d}", 1) for i in range(1, 21)])
        _insert(conn, "points", [(i, f"M{1 + i % 20:04d}", 5) for i in range(1, 41)])
        _insert(conn, "accounts", [(i,) for i in range(1, 11)])
        _insert(conn, "sessions", [(i, 1 + i % 10) for i in range(1, 21)])
        _insert(conn, "refunds", [(i, i, f"S{i}") for i in range(1, 11)])
    inventory = inventory_source(engine, "school")
    yield engine, inventory
    engine.dispose()


@pytest.fixture(scope="module")
def report(source):
    engine, inventory = source
    return link_report(engine, inventory, subject_table="users")


def _link(links, table: str, column: str):
    found = [x for x in links if x.table == table and x.columns == [column]]
    return found[0] if found else None


def _candidate(report, table: str, column: str):
    return [c for c in report.candidates if c.link.table == table and c.link.columns == [column]]


@pytest.mark.parametrize(
    ("table", "column", "ref_table", "rule"),
    [
        ("orders", "userId", "users", "<stem>_id"),  # camelCase, plural table
        ("order_items", "order_id", "orders", "<stem>_id"),
        ("user_profile", "user_id", "users", "<stem>_id"),
        ("users", "city_id", "cities", "<stem>_id"),
        ("kaoshi", "xuesheng_id", "t_xuesheng", "<stem>_id"),  # pinyin, prefixed table
        ("成绩", "学员编号", "t_xuesheng", "<stem>_id"),  # Chinese
        ("messages", "fromId", "users", "role"),
        ("messages", "toId", "users", "role"),
        ("messages", "createdUserId", "users", "role"),
        ("posts", "author_id", "users", "role"),
        ("users", "inviterId", "users", "role"),
        ("logins", "user_id", "users", "<stem>_id"),  # text values against integer keys
        ("points", "member_no", "vip_card", "<key>"),  # named as another table's key
        ("sessions", "account_uid", "accounts", "<stem>_<key>"),
    ],
)
def test_names_confirmed_by_values_become_inferred_links(report, table, column, ref_table, rule):
    link = _link(report.links, table, column)
    assert link is not None, [c.reason for c in _candidate(report, table, column)]
    key = {"vip_card": "member_no", "accounts": "uid"}.get(ref_table, "id")
    assert (link.kind, link.ref_table, link.ref_columns) == ("inferred", ref_table, [key])
    assert link.evidence["rule"].startswith(rule)
    assert link.evidence["containment"] >= CONTAINMENT and link.evidence["matched"] >= 1
    assert set(link.evidence) == {"rule", "non_null", "matched", "containment"}


def test_containment_thresholds(report):
    accepted = _link(report.links, "visits", "user_id")
    assert accepted.evidence == {
        "rule": accepted.evidence["rule"],
        "non_null": 100,
        "matched": 95,
        "containment": 0.95,
    }
    assert _link(report.links, "clicks", "user_id") is None
    (rejected,) = _candidate(report, "clicks", "user_id")
    assert not rejected.accepted and rejected.decided_by == "values"
    assert rejected.link.evidence["containment"] == 0.5 and "0.500 < 0.9" in rejected.reason


def test_a_decoy_user_id_is_rejected_by_values(report):
    assert _link(report.links, "coupons", "user_id") is None
    (decoy,) = _candidate(report, "coupons", "user_id")
    assert decoy.link.evidence["matched"] == 0 and not decoy.accepted
    assert "880" not in decoy.reason  # counts, never values


def test_an_empty_column_is_a_candidate_not_a_link(report):
    assert _link(report.links, "drafts", "user_id") is None
    (empty,) = _candidate(report, "drafts", "user_id")
    assert empty.link.evidence["non_null"] == 0 and "holds no values" in empty.reason


def test_columns_without_a_name_rule_stay_unlinked(report):
    for table, column in [
        ("settings", "owner_ref"),
        ("coupons", "code"),
        ("users", "name"),
        ("orders", "total"),
    ]:
        assert _link(report.links, table, column) is None and not _candidate(report, table, column)


def test_declared_foreign_keys_keep_their_on_delete_and_are_not_inferred_again(source, report):
    _, inventory = source
    refund = _link(report.links, "refunds", "order_id")
    assert (refund.kind, refund.on_delete) == ("declared", "CASCADE")
    assert not _candidate(report, "refunds", "order_id")
    assert inventory.table("refunds").unique_keys == [["serial"]]


def test_role_rules_apply_to_the_subject_table_only(source):
    engine, inventory = source
    links = find_links(engine, inventory, subject_table=None)
    assert _link(links, "messages", "fromId") is None
    assert _link(links, "orders", "userId") is not None  # a name rule, not a role


def test_chains_to_the_subject_and_what_the_subject_refers_to(source, report):
    _, inventory = source
    inventory.links = report.links
    paths = subject_paths(inventory, "users")
    chain = paths.linked["order_items"]
    assert [x.describe() for x in chain] == [
        "order_items(order_id) -> orders(id)",
        "orders(userId) -> users(id)",
    ]
    assert [x.table for x in paths.linked["refunds"]] == ["refunds", "orders"]
    assert {"orders", "user_profile", "visits", "messages", "posts", "logins"} <= set(paths.linked)
    assert not {"coupons", "clicks", "drafts", "cities", "settings", "kaoshi", "users"} & set(paths.linked)
    assert set(paths.referenced) == {"cities"} and paths.direction("cities") == "referenced"
    assert paths.direction("orders") == "linked" and paths.direction("settings") is None


def test_one_to_one_links_are_on_a_primary_or_unique_key(source, report):
    _, inventory = source
    assert one_to_one(_link(report.links, "user_profile", "user_id"), inventory)
    assert not one_to_one(_link(report.links, "orders", "userId"), inventory)


def test_each_check_is_one_bounded_query(source):
    engine, inventory = source
    statements = []
    listen = sa.event.listens_for(engine, "before_cursor_execute")(lambda *a: statements.append(a[2]))
    try:
        link_report(engine, inventory, subject_table="users", limit=7)
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
    checks = [s for s in statements if "count(" in s.lower()]
    assert checks and all("LIMIT" in s.upper() for s in checks)
    assert len(checks) == len(link_report(engine, inventory, subject_table="users").candidates)


# ---- the manifest's links: ----------------------------------------------------------------------


def _spec(**fields) -> LinkSpec:
    return LinkSpec(reason=fields.pop("reason", "known from the application's code"), **fields)


def test_the_manifest_adds_and_rejects_links(source):
    engine, inventory = source
    report = link_report(
        engine,
        inventory,
        subject_table="users",
        specs=[
            _spec(table="settings", columns=["owner_ref"], references="users"),
            _spec(table="posts", columns=["author_id"], reject=True, reason="authors are staff accounts"),
        ],
    )
    added = _link(report.links, "settings", "owner_ref")
    assert added.kind == "manifest" and added.ref_columns == ["id"]
    assert (
        added.evidence["reason"] == "known from the application's code"
        and added.evidence["containment"] == 1.0
    )
    assert _link(report.links, "posts", "author_id") is None
    (dropped,) = _candidate(report, "posts", "author_id")
    assert dropped.decided_by == "manifest" and "authors are staff accounts" in dropped.reason
    assert report.summary().startswith("1 declared, ") and "1 from the manifest" in report.summary()


def test_the_manifest_may_reject_a_declared_key_or_restate_it(source):
    engine, inventory = source
    reject = _spec(table="refunds", columns=["order_id"], reject=True, reason="refunds are the shop's")
    assert _link(find_links(engine, inventory, specs=[reject]), "refunds", "order_id") is None
    restate = _spec(table="refunds", columns=["order_id"], references="orders", reason="said twice")
    link = _link(find_links(engine, inventory, specs=[restate]), "refunds", "order_id")
    assert link.kind == "manifest" and link.on_delete == "CASCADE"  # the key still cascades


def test_a_rejection_of_a_candidate_values_turned_down_is_accepted(source):
    engine, inventory = source
    spec = _spec(table="coupons", columns=["user_id"], reject=True, reason="a campaign number")
    assert (
        _link(find_links(engine, inventory, subject_table="users", specs=[spec]), "coupons", "user_id")
        is None
    )


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (_spec(table="settings", columns=["owner"], references="users"), "has no column owner"),
        (_spec(table="settings", columns=["owner_ref"], references="members"), "members does not exist"),
        (_spec(table="setting", columns=["owner_ref"], references="users"), "table setting does not exist"),
        (
            _spec(table="settings", columns=["owner_ref"], references="users", ref_columns=["uid"]),
            "no column uid",
        ),
        (_spec(table="coupons", columns=["user_id"], references="users"), "contradicted by the values"),
        (_spec(table="settings", columns=["value"], reject=True, reason="not a link at all"), "did not find"),
    ],
)
def test_bad_manifest_links_are_clear_errors(source, spec, says):
    engine, inventory = source
    with pytest.raises(LinkError) as err:
        find_links(engine, inventory, subject_table="users", specs=[spec])
    assert says in str(err.value) and "links: " in str(err.value)
    assert isinstance(err.value, SourceError) and isinstance(err.value, ValueError)
    assert "880" not in str(err.value)


def test_a_contradicted_link_is_kept_when_the_manifest_says_so(source):
    engine, inventory = source
    spec = _spec(
        table="coupons",
        columns=["user_id"],
        references="users",
        check_values=False,
        reason="the users of these coupons were deleted years ago",
    )
    link = _link(find_links(engine, inventory, subject_table="users", specs=[spec]), "coupons", "user_id")
    assert link.kind == "manifest" and "not checked" in link.evidence["values"]


# ---- partitions --------------------------------------------------------------------------------


def _table(name, *, partition_of=None, partitioned=False, fks=()):
    cols = [ColumnInfo("id", "INTEGER", primary_key=True), ColumnInfo("customer_id", "INTEGER")]
    return TableInfo(name, None, cols, ["id"], list(fks), partition_of=partition_of, partitioned=partitioned)


def test_a_partitioned_table_gets_its_partitions_foreign_keys():
    fk = ForeignKey(["customer_id"], "customer", ["id"], on_delete="CASCADE", name="fk")
    inventory = SourceInventory(
        "s",
        "postgresql",
        [
            _table("customer"),
            _table("payment", partitioned=True),
            _table("payment_1", partition_of="payment", fks=[fk]),
            _table("payment_2", partition_of="payment", fks=[fk]),
            _table("payment_3", partition_of="payment"),
        ],
    )
    links = declared_links(inventory)
    parent = _link(links, "payment", "customer_id")
    assert parent.kind == "declared" and parent.on_delete == "CASCADE"
    assert parent.evidence == {"partitions": ["payment_1", "payment_2"]}
    assert _link(links, "payment_1", "customer_id").evidence == {"constraint": "fk"}
    assert _link(links, "payment_3", "customer_id") is None
    inventory.links = links
    inventory.rejected_links = [{"link": "payment(x) -> customer(id)", "accepted": False}]
    round_trip = SourceInventory.from_dict(inventory.to_dict())
    assert round_trip.table("payment_1").partition_of == "payment" and round_trip.table("payment").partitioned
    assert round_trip.links == links and round_trip.rejected_links == inventory.rejected_links


def test_checks_that_cannot_run_are_candidates_with_the_reason(source, monkeypatch):
    engine, inventory = source
    copy = SourceInventory.from_dict(inventory.to_dict())
    copy.table("visits").problem = "rows cannot be counted (permission denied)"
    monkeypatch.setattr("dereg.inventory.links.CAST_ROWS_LIMIT", 10)  # users has 100 rows
    report = link_report(engine, copy, subject_table="users")
    (unread,) = _candidate(report, "visits", "user_id")
    assert not unread.accepted and "visits cannot be read" in unread.reason
    (cast,) = _candidate(report, "logins", "user_id")
    assert not cast.accepted and "types differ" in cast.reason
    assert {c.decided_by for c in (unread, cast)} == {"unchecked"} and report.summary().endswith(
        ", 2 not checked"
    )
    assert _link(report.links, "orders", "userId") is not None
