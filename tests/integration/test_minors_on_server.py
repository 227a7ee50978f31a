"""Minors of a table of people counted by PostgreSQL (`engine._minors_counted_on_server`): the same
count as every row read back and judged here (`engine._read_minors`), on birth dates around the
cut-off (29 February, closure dates on 28 February and 1 March of common and leap years) and on
resident IDs the server can place and those it cannot (lower-case x, a wrong check digit, spaces,
full-width digits, 15 characters, empty)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest
import sqlalchemy as sa

from dereg.classify import cn_resident_id
from dereg.classify.engine import _minors_counted_on_server, _read_minors
from dereg.inventory.sql import inventory_source
from dereg.model import ColumnFinding

pytestmark = pytest.mark.integration

CLOSURES = [
    dt.date(2026, 2, 28),
    dt.date(2026, 3, 1),
    dt.date(2028, 2, 28),
    dt.date(2028, 2, 29),
    dt.date(2026, 12, 31),
]


def _id(born: dt.date, serial: int, last: str | None = None) -> str:
    body = f"310104{born:%Y%m%d}{serial % 1000:03d}"
    return body + (last or cn_resident_id.calc_check_digit(body + "0"))


def _births(rng: random.Random) -> list[dt.date]:
    """Days around every cut-off of CLOSURES, 29 February of the leap years 14 years before, and
    some of anything."""
    days = []
    for closure in CLOSURES:
        around = dt.date(closure.year - 14, closure.month, min(closure.day, 28))
        days += [around + dt.timedelta(days=d) for d in range(-3, 4)]
    days += [dt.date(2012, 2, 29), dt.date(2014, 2, 28), dt.date(2014, 3, 1), dt.date(2012, 3, 1)]
    days += [dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(80 * 365)) for _ in range(200)]
    return days


def _rows(rng: random.Random) -> list[dict]:
    rows = []
    for n, born in enumerate(_births(rng)):
        plain = _id(born, n)
        oddities = [
            plain,
            plain[:17] + "x" if plain.endswith("X") else plain,
            _id(born, n, last="0" if plain[-1] != "0" else "1"),  # wrong check digit
            " " + plain,
            plain[:6] + " " + plain[7:],
            plain.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
            plain[:6] + plain[8:17],  # 15 characters
            "",
            None,
        ]
        for k, raw in enumerate(oddities):
            rows.append({"birth": born if k % 3 == 0 else None, "id_number": raw})
    return rows


def test_minors_counted_on_the_server_as_row_by_row(pg_url):
    rng = random.Random(14)
    engine = sa.create_engine(pg_url)
    try:
        md = sa.MetaData()
        people = sa.Table(
            "people",
            md,
            sa.Column("pk", sa.Integer, primary_key=True),
            sa.Column("birth", sa.Date),
            sa.Column("id_number", sa.String(40)),
        )
        md.create_all(engine)
        rows = _rows(rng)
        with engine.begin() as conn:
            conn.execute(people.insert(), rows)
        info = dataclasses.replace(inventory_source(engine, "case").table("people"), primary_key=[])
        birth = ColumnFinding(
            table="people", column="birth", type="DATE", categories=["birth_date"], level="sensitive"
        )
        ident = ColumnFinding(
            table="people",
            column="id_number",
            type="VARCHAR(40)",
            categories=["cn_resident_id"],
            level="sensitive",
        )
        t = sa.table("people", sa.column("birth"), sa.column("id_number"))
        for closure in CLOSURES:
            for birth_col, id_col in ((birth, ident), (birth, None), (None, ident)):
                cols = [t.c[f.column] for f in (birth_col, id_col) if f is not None]
                _, expected, _ = _read_minors(
                    engine, info, "people", [(info, birth_col, id_col, sa.select(*cols))], closure
                )
                counted = _minors_counted_on_server(engine, info, birth_col, id_col, closure)
                assert counted == (len(rows), expected), (
                    closure,
                    birth_col and birth_col.column,
                    id_col and id_col.column,
                )
            # the cases are there: minors by birth date and by ID, on both sides of each cut-off
            assert 0 < expected < len(rows)
    finally:
        engine.dispose()
