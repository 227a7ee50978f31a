"""Helpers: a small school-like schema on SQLite, PostgreSQL or MariaDB, with its inventory and classification.

Built here (not from devtools.demo) so that the erasure tests depend only on the erase package.
guardians <- students <- contracts / attendance / notes / enrollments (composite key), courses,
accounting_records (retained, pseudonymized) and leads (personal, no foreign key).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

import sqlalchemy as sa

from dereg.erase.plan import RetainRule, build_plan
from dereg.erase.selection import count_selected
from dereg.model import (
    ClassificationResult,
    ColumnFinding,
    ColumnInfo,
    ForeignKey,
    SourceInventory,
    TableInfo,
)

PLANTED_ID = "11010520150315002X"  # a student's resident ID number we look for in the raw SQLite file
SOURCE_ID = "school_db"

PERSONAL = {
    "guardians": ["name", "mobile", "email", "id_number"],
    "students": ["name", "id_number", "birth_date"],
    "contracts": ["payer_bank_card"],
    "notes": ["body"],
    "accounting_records": ["payer_name", "payer_mobile", "payer_code", "payer_birth"],
    "leads": ["name", "mobile"],
}
RETAIN = [
    RetainRule(table="accounting_records", action="pseudonymize", law="会计档案管理办法 第十四条", years=30)
]
SIZES = {
    "guardians": 30,
    "students": 50,
    "courses": 4,
    "contracts": 60,
    "attendance": 120,
    "notes": 25,
    "enrollments": 70,
    "accounting_records": 40,
    "leads": 15,
}


def school_metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "guardians",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("mobile", sa.String(20), nullable=False),
        sa.Column("email", sa.String(120)),
        sa.Column("id_number", sa.String(18), nullable=False),
    )
    sa.Table(
        "students",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("id_number", sa.String(18)),
        sa.Column("birth_date", sa.Date),
        sa.Column("guardian_id", sa.Integer, sa.ForeignKey("guardians.id"), nullable=False),
    )
    sa.Table(
        "courses",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.String(60), nullable=False),
    )
    sa.Table(
        "contracts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("course_id", sa.Integer, sa.ForeignKey("courses.id"), nullable=False),
        sa.Column("payer_bank_card", sa.String(19)),
    )
    sa.Table(
        "attendance",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("course_id", sa.Integer, sa.ForeignKey("courses.id"), nullable=False),
        sa.Column("lesson_date", sa.Date),
    )
    sa.Table(
        "notes",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("body", sa.Text),
    )
    sa.Table(
        "enrollments",
        md,
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), primary_key=True),
        sa.Column("course_id", sa.Integer, sa.ForeignKey("courses.id"), primary_key=True),
        sa.Column("since", sa.Date),
    )
    sa.Table(
        "accounting_records",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("voucher_no", sa.String(20), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("payer_name", sa.String(50)),
        sa.Column("payer_mobile", sa.String(20)),
        sa.Column("payer_code", sa.String(6)),  # too short for a token: becomes NULL
        sa.Column("payer_birth", sa.Date),  # not text: becomes NULL
        sa.Column("contract_ref", sa.Integer),
    )
    sa.Table(
        "leads",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50)),
        sa.Column("mobile", sa.String(20)),
    )
    return md


def _mobile(rng: random.Random) -> str:
    return "13" + "".join(rng.choice("0123456789") for _ in range(9))


def school_rows(seed: int = 7) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    day = dt.date(2015, 3, 15)
    rows: dict[str, list[dict]] = {}
    rows["guardians"] = [
        {
            "id": i,
            "name": f"家长{i}",
            "mobile": _mobile(rng),
            "email": f"g{i}@example.cn",
            "id_number": f"1101051985{i:04d}{rng.randint(1000, 9999)}",
        }
        for i in range(1, 31)
    ]
    rows["students"] = [
        {
            "id": i,
            "name": f"学生{i}",
            "id_number": PLANTED_ID if i == 1 else f"3301062014{i:08d}",
            "birth_date": day + dt.timedelta(days=i),
            "guardian_id": 1 + (i - 1) % 30,
        }
        for i in range(1, 51)
    ]
    rows["courses"] = [{"id": i, "title": f"Course {i}"} for i in range(1, 5)]
    rows["contracts"] = [
        {
            "id": i,
            "student_id": 1 + i % 50,
            "course_id": 1 + i % 4,
            "payer_bank_card": "6222" + "".join(rng.choice("0123456789") for _ in range(12)),
        }
        for i in range(1, 61)
    ]
    rows["attendance"] = [
        {"id": i, "student_id": 1 + i % 50, "course_id": 1 + i % 4, "lesson_date": day + dt.timedelta(days=i)}
        for i in range(1, 121)
    ]
    rows["notes"] = [
        {"id": i, "student_id": 1 + (i * 3) % 50, "body": f"note {i} call {_mobile(rng)}"}
        for i in range(1, 26)
    ]
    rows["enrollments"] = [
        {"student_id": 1 + i % 50, "course_id": 1 + (i // 50) % 4, "since": day} for i in range(70)
    ]
    rows["accounting_records"] = [
        {
            "id": i,
            "voucher_no": f"V{i:05d}",
            "amount": f"{100 + i}.50",
            # "tokyo" starts like "tok_" does under LIKE's "_" wildcard: it must still be pseudonymized
            "payer_name": "tokyo 李" if i == 3 else (None if i == 4 else f"付款人{i}"),
            "payer_mobile": _mobile(rng),
            "payer_code": f"P{i:04d}",
            "payer_birth": day,
            "contract_ref": i,
        }
        for i in range(1, 41)
    ]
    rows["leads"] = [{"id": i, "name": f"Lead {i}", "mobile": _mobile(rng)} for i in range(1, 16)]
    return rows


def create_school(engine: sa.Engine, seed: int = 7) -> None:
    md = school_metadata()
    md.drop_all(engine)
    md.create_all(engine)
    data = school_rows(seed)
    with engine.begin() as conn:
        for table in md.sorted_tables:
            conn.execute(table.insert(), data[table.name])


def reflect_inventory(engine: sa.Engine, source_id: str = SOURCE_ID) -> SourceInventory:
    """A tiny stand-in for dereg.inventory: tables, columns, keys, foreign keys and row counts."""
    tables = []
    with engine.connect() as conn:
        insp = sa.inspect(conn)
        for name in sorted(insp.get_table_names()):
            pk = list(insp.get_pk_constraint(name).get("constrained_columns") or [])
            cols = [
                ColumnInfo(
                    name=c["name"],
                    type=str(c["type"]),
                    nullable=bool(c["nullable"]),
                    primary_key=c["name"] in pk,
                    max_length=getattr(c["type"], "length", None),
                )
                for c in insp.get_columns(name)
            ]
            fks = [
                ForeignKey(fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                for fk in insp.get_foreign_keys(name)
            ]
            count = conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one()
            tables.append(TableInfo(name, None, cols, pk, fks, int(count)))
    dialect = {"mariadb": "mysql"}.get(engine.dialect.name, engine.dialect.name)
    return SourceInventory(source_id=source_id, dialect=dialect, tables=tables)


def school_classification(inventory: SourceInventory) -> ClassificationResult:
    findings = []
    for t in inventory.tables:
        for c in t.columns:
            personal = c.name in PERSONAL.get(t.name, [])
            findings.append(
                ColumnFinding(
                    t.name, c.name, ["person_name"] if personal else [], "general" if personal else None
                )
            )
    return ClassificationResult(source_id=inventory.source_id, columns=findings)


#: leads hold personal data no link ties to the students: the manifest decides to erase them
DECISIONS = {"leads": ("erase", "enquiries of the closing school, not kept")}


def school_plan(engine: sa.Engine):
    inventory = reflect_inventory(engine)
    plan = build_plan(
        company_id="demo_academy",
        inventory=inventory,
        classification=school_classification(inventory),
        subject_table="students",
        retain=RETAIN,
        decisions=DECISIONS,
    )
    return count_selected(engine, plan)


def dump(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table, in key order, as text: to compare two end states."""
    md = sa.MetaData()
    md.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for table in md.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            out[table.name] = [
                tuple(str(v) for v in row) for row in conn.execute(sa.select(table).order_by(*order))
            ]
    return out


@dataclass
class School:
    engine: sa.Engine
    url: str
    planted_id: str = PLANTED_ID
    sizes = SIZES
    personal = PERSONAL

    def create(self, seed: int = 7) -> None:
        create_school(self.engine, seed)

    def plan(self):
        return school_plan(self.engine)

    def inventory(self) -> SourceInventory:
        return reflect_inventory(self.engine)

    def dump(self) -> dict[str, list[tuple]]:
        return dump(self.engine)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()
