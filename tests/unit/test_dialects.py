"""The dialect layer: every database module keeps the protocol, and nothing outside it asks which
database it talks to (the check docs/dialects.md promises). Runs without servers: SQLite in a
temporary folder, PostgreSQL and MySQL SQL compiled but never sent."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as sa_mysql
from sqlalchemy.dialects import postgresql as sa_postgresql

import dereg.dialects as dialects_pkg
from dereg.dialects import DIALECTS, dialect_for, disposing, normalize_url, recorded_name
from dereg.dialects.base import GENERIC, Dialect

PACKAGE = Path(dialects_pkg.__file__).resolve().parents[1]  # plugins/dereg
DOCS = PACKAGE.parents[1] / "docs" / "dialects.md"
MODULES = sorted(m.name for m in pkgutil.iter_modules(dialects_pkg.__path__) if m.name != "base")
# The grep of issue 14's "done when": a branch on the database's name outside dereg/dialects/.
NAME_BRANCH = re.compile(r"dialect.name|get_backend_name\(\)\s*==")


def _module(name: str):
    return importlib.import_module(f"dereg.dialects.{name}")


def test_every_module_is_registered_and_documented():
    assert {"mysql", "postgresql", "sqlite"} <= set(MODULES)
    assert {type(_module(m).DIALECT) for m in MODULES} == {type(d) for d in DIALECTS}
    doc = DOCS.read_text(encoding="utf-8")
    for name in MODULES:
        assert f"{name}.py" in doc, f"docs/dialects.md does not mention dialects/{name}.py"


@pytest.mark.parametrize("name", MODULES)
def test_module_keeps_the_protocol(name):
    module = _module(name)
    assert (module.__doc__ or "").strip(), f"dialects/{name}.py needs a module docstring"
    dialect = module.DIALECT
    cls = type(dialect)
    assert isinstance(dialect, Dialect) and cls is not Dialect
    assert dialect.name == name and dialect.sqlalchemy_names
    for n in dialect.sqlalchemy_names:
        assert dialect_for(f"{n}://") is dialect
    for attr, base_member in vars(Dialect).items():
        if attr.startswith("_") or not callable(base_member):
            continue
        own = getattr(cls, attr)
        assert list(inspect.signature(own).parameters) == list(inspect.signature(base_member).parameters), (
            f"{cls.__name__}.{attr} changes the protocol's signature"
        )
    # a capability promised is a capability implemented
    if dialect.truncates:
        assert cls.referrers is not Dialect.referrers and cls.truncate is not Dialect.truncate
    if cls.has_fast_reader is not Dialect.has_fast_reader:
        assert cls.fast_cursor is not Dialect.fast_cursor
    assert cls.purge is not Dialect.purge, f"{name}: purge must say what it does and cannot reach"
    if dialect.default_driver:  # installed: a URL without a driver must not fail on import
        for n in dialect.sqlalchemy_names:
            sa.make_url(f"{n}+{dialect.default_driver}://").get_dialect().import_dbapi()


def test_names_do_not_overlap_and_unknown_databases_get_the_generic_dialect():
    seen: set[str] = set()
    for d in DIALECTS:
        assert not seen & d.sqlalchemy_names
        seen |= d.sqlalchemy_names
    assert dialect_for("oracle+oracledb://u@h/db") is GENERIC
    assert recorded_name("oracle+oracledb://u@h/db") == "oracle"
    assert recorded_name("mariadb+pymysql://u@h/db") == "mysql"
    assert recorded_name(sa.create_engine("sqlite://")) == "sqlite"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("mysql://root@h/db", "mysql+pymysql://root@h/db"),
        ("mariadb://root@h/db", "mariadb+pymysql://root@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("oracle://u@h/db", "oracle://u@h/db"),
    ],
)
def test_urls_without_a_driver_get_the_installed_one(given, expected):
    assert normalize_url(given).render_as_string(hide_password=False) == expected


def test_a_driverless_postgresql_url_makes_an_engine():
    # SQLAlchemy 2.1's own default (psycopg 3) is not installed: `--scratch-url postgresql://...`
    # crashed with ModuleNotFoundError before the URL was normalised
    with disposing(sa.create_engine(normalize_url("postgresql://postgres@127.0.0.1/x"))) as engine:
        assert engine.dialect.driver == "psycopg2"


def test_disposing_disposes_also_on_error():
    engine = sa.create_engine("sqlite://")
    calls = []
    real = engine.dispose
    engine.dispose = lambda *a, **k: calls.append(1) or real(*a, **k)
    with pytest.raises(RuntimeError), disposing(engine):
        raise RuntimeError("boom")
    assert calls == [1]


def test_sampling_and_ledger_locks_compile_per_database():
    pg, my = dialect_for("postgresql://"), dialect_for("mysql://")
    assert str(
        sa.select(sa.literal(1)).order_by(my.random_order()).compile(dialect=sa_mysql.dialect())
    ).endswith("ORDER BY rand()")
    assert "random()" in str(
        sa.select(sa.literal(1)).order_by(pg.random_order()).compile(dialect=sa_postgresql.dialect())
    )
    head = sa.table("ledger_head", sa.column("seq"))
    query = sa.select(head.c.seq)
    locked = my.lock_ledger_head(None, query)  # MySQL only changes the query
    assert "FOR UPDATE" in str(locked.compile(dialect=sa_mysql.dialect()))


def test_sqlite_file_checks_store_and_purge(tmp_path):
    lite = dialect_for("sqlite://")
    missing = tmp_path / "nope.db"
    assert lite.missing_file(f"sqlite:///{missing}") == str(missing)
    assert lite.missing_file("sqlite://") is None and lite.missing_file("sqlite:///:memory:") is None
    store_url = sa.make_url(f"sqlite:///{tmp_path / 'deep' / 'store.db'}")
    with disposing(lite.store_engine(store_url)) as store:
        with store.begin() as conn:  # BEGIN IMMEDIATE, WAL
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            conn.exec_driver_sql("INSERT INTO t (v) VALUES ('a\tb'), (NULL)")
            lite.secure_delete(conn)
        assert lite.missing_file(store_url) is None
        blocks = list(
            lite.text_blocks(
                store, sa.table("t", sa.column("id"), sa.column("v")), ["id", "v"], block_chars=1, batch=1
            )
        )
        assert blocks == ["1\ta b\n", "2\t\n"]
    notes: list[str] = []
    with disposing(sa.create_engine(store_url)) as source:  # a source engine, not the store's
        assert "VACUUM" in lite.purge(source, ["t"], notes)
    assert notes == ["WAL checkpointed and truncated"]


def test_generic_purge_says_it_did_nothing():
    notes: list[str] = []
    assert GENERIC.purge(sa.create_engine("sqlite://"), ["t"], notes) == "none"
    assert "no purge known for dialect sqlite" in notes[0]


def test_nothing_outside_dialects_branches_on_the_database_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith(("dialects/", "stack/", "demo/")):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if NAME_BRANCH.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "move these into a module of dereg/dialects/:\n" + "\n".join(offenders)


def test_copy_text_unescaped_as_by_the_four_replaces():
    """`_unescape` skips its replaces when every backslash opens a NULL (`\\N`): the same text as
    the four replaces on every mix of escapes, NULLs and backslashes before N, whether it looks
    at the text or at the bytes it was decoded from."""
    import random

    from dereg.dialects.postgresql import _unescape

    def replaced(block: str) -> str:
        return block.replace("\\\\", "  ").replace("\\t", "  ").replace("\\n", "  ").replace("\\r", "  ")

    rng = random.Random(5)
    pieces = ["\\N", "\\\\", "\\t", "\\n", "\\r", "\\", "N", "a", "张", "\t", "\n"]
    blocks = ["", "plain\tline\n", "\\N\t\\N\n", "\\\\N", "a\\\\\\N"]
    blocks += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12))) for _ in range(5000)]
    for block in blocks:
        assert _unescape(block) == replaced(block), block
        assert _unescape(block, block.encode()) == replaced(block), block
