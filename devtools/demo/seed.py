"""Seed the demo school's database: guardians, students, courses, contracts, attendance, notes and
the accounting records the law requires to be kept.

Deterministic for a given seed (random.Random plus a seeded Faker("zh_CN")), on any SQLAlchemy URL
(SQLite, PostgreSQL, MariaDB). The values are synthetic but shaped like real ones: resident ID
numbers with right check digits and real region codes, Luhn-valid UnionPay cards, mainland mobile
numbers, and teacher notes that sometimes quote a parent's phone or ID number in free text.

    python -m devtools.demo.seed [--url URL] [--students N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import sqlalchemy as sa
from faker import Faker

from dereg.config import state_dir

BATCH = 5000
TABLES = ("guardians", "students", "courses", "contracts", "attendance", "notes", "accounting_records")

# Real county-level region codes, in use for every birth year of the demo's people (北京东城, 上海徐汇, ...).
REGIONS = (
    "110101",
    "110102",
    "110105",
    "110106",
    "110108",
    "120101",
    "120104",
    "120106",
    "140121",
    "152522",
    "210321",
    "222424",
    "232721",
    "310101",
    "310104",
    "310107",
    "330127",
    "340121",
    "350121",
    "360121",
    "422822",
    "433126",
    "513335",
    "522723",
    "530124",
    "542527",
    "610331",
    "622926",
    "632822",
    "640121",
    "653221",
)
MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "176",
    "177",
    "180",
    "181",
    "182",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "198",
    "199",
)
# (issuer prefix, length, weight): mostly UnionPay debit cards, some Visa/Mastercard credit cards
CARD_BINS = (
    ("622202", 19, 3),
    ("621700", 19, 2),
    ("622848", 19, 2),
    ("621483", 16, 2),
    ("622588", 16, 2),
    ("625911", 16, 1),
    ("436742", 16, 1),
    ("524094", 16, 1),
)
EMAIL_DOMAINS = ("example.com", "example.cn", "example.net", "example.org")
RELATIONS = (("母亲", 45), ("父亲", 40), ("祖母", 5), ("祖父", 4), ("外婆", 4), ("外公", 2))
COURSES = (
    ("少儿英语", "启蒙"),
    ("少儿英语", "进阶"),
    ("围棋", "初级"),
    ("围棋", "中级"),
    ("钢琴", "初级"),
    ("美术", "启蒙"),
    ("书法", "初级"),
    ("少儿编程", "初级"),
    ("少儿编程", "中级"),
    ("数学思维", "进阶"),
    ("舞蹈", "启蒙"),
    ("科学实验", "初级"),
)
GRADES = (
    "幼儿园大班",
    "一年级",
    "二年级",
    "三年级",
    "四年级",
    "五年级",
    "六年级",
    "初一",
    "初二",
    "初三",
    "高一",
    "高二",
)
HEALTH = (
    "花生过敏",
    "轻度哮喘，随身携带喷雾",
    "对青霉素过敏",
    "乳糖不耐受",
    "近视，需坐前排",
    "芒果过敏",
    "有过敏性鼻炎",
    "曾患癫痫，已控制",
)
NOTE_TEXTS = (
    "今天课堂表现积极，主动回答了3个问题。",
    "作业完成得很认真，书写工整，得分95分。",
    "注意力不太集中，建议家长多陪伴练习。",
    "本周进步明显，已掌握第4单元的内容。",
    "请假一次，已安排在{day}补课。",
    "和同学相处融洽，乐于助人。",
    "期中测评成绩优秀，推荐参加{day}的展示活动。",
    "上课迟到两次，已与家长沟通。",
)
STATUSES = (("已完成", 5), ("履行中", 4), ("已退费", 1))


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_digit(first17: str) -> str:
    """GB 11643 check digit (ISO 7064 MOD 11-2) of the first 17 digits."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def luhn_check_digit(partial: str) -> str:
    """The digit that makes `partial` + digit pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # doubled, because the check digit will take the rightmost position
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def _metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "guardians",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("mobile", sa.String(20), nullable=False),
        sa.Column("email", sa.String(120), nullable=True),
        sa.Column("id_number", sa.String(18), nullable=False),
        sa.Column("address", sa.String(200)),
        sa.Column("relation", sa.String(10)),
    )
    sa.Table(
        "students",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(50), nullable=False),
        sa.Column("gender", sa.String(4)),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("id_number", sa.String(18)),
        sa.Column("guardian_id", sa.Integer, sa.ForeignKey("guardians.id"), nullable=False),
        sa.Column("school", sa.String(60)),
        sa.Column("grade", sa.String(20)),
        sa.Column("enrolled_on", sa.Date),
        sa.Column("health_notes", sa.Text, nullable=True),
    )
    sa.Table(
        "courses",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("title", sa.String(60), nullable=False),
        sa.Column("level", sa.String(20)),
        sa.Column("price", sa.Numeric(10, 2)),
    )
    sa.Table(
        "contracts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("course_id", sa.Integer, sa.ForeignKey("courses.id"), nullable=False),
        sa.Column("signed_on", sa.Date),
        sa.Column("amount", sa.Numeric(10, 2)),
        sa.Column("payer_bank_card", sa.String(19)),
        sa.Column("status", sa.String(20)),
    )
    sa.Table(
        "attendance",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("course_id", sa.Integer, sa.ForeignKey("courses.id"), nullable=False),
        sa.Column("lesson_date", sa.Date),
        sa.Column("present", sa.Boolean),
    )
    sa.Table(
        "notes",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("student_id", sa.Integer, sa.ForeignKey("students.id"), nullable=False),
        sa.Column("written_on", sa.Date),
        sa.Column("body", sa.Text),
    )
    sa.Table(
        "accounting_records",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("voucher_no", sa.String(20), nullable=False),
        sa.Column("booked_on", sa.Date),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("payer_name", sa.String(50)),
        sa.Column("payer_bank_card", sa.String(19)),
        sa.Column("payer_mobile", sa.String(20)),
        sa.Column("contract_ref", sa.Integer),
        sa.Column("summary", sa.String(200)),
    )
    return md


def _weighted(rng: random.Random, options):
    return rng.choices([o[0] for o in options], weights=[o[-1] for o in options])[0]


def resident_id(rng: random.Random, born: date, male: bool) -> str:
    """A synthetic 18-digit resident ID with a real region code and a right check digit."""
    seq = rng.randrange(0, 500) * 2 + (1 if male else 0)
    body = f"{rng.choice(REGIONS)}{born:%Y%m%d}{seq:03d}"
    return body + id_check_digit(body)


def bank_card(rng: random.Random) -> str:
    prefix, length, _ = rng.choices(CARD_BINS, weights=[b[2] for b in CARD_BINS])[0]
    partial = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    return partial + luhn_check_digit(partial)


def mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _random_day(rng: random.Random, start: date, end: date) -> date:
    return start + timedelta(days=rng.randrange(max((end - start).days, 1)))


def _rows(students: int, seed: int, closure_date: date) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    data: dict[str, list[dict]] = {t: [] for t in TABLES}

    data["courses"] = [
        {
            "id": i,
            "title": title,
            "level": level,
            "price": Decimal(rng.choice((1800, 2400, 3200, 3600, 4800, 5600))),
        }
        for i, (title, level) in enumerate(COURSES, start=1)
    ]

    emails: set[str] = set()
    student_id = 0
    guardian_id = 0
    while student_id < students:
        guardian_id += 1
        relation = _weighted(rng, RELATIONS)
        male_guardian = relation in {"父亲", "祖父", "外公"}
        surname = fake.last_name()
        g_name = surname + (fake.first_name_male() if male_guardian else fake.first_name_female())
        age = rng.randint(28, 45) if relation in {"父亲", "母亲"} else rng.randint(55, 70)
        g_born = _random_day(
            rng, date(closure_date.year - age - 1, 1, 1), date(closure_date.year - age, 1, 1)
        )
        email = None
        if rng.random() >= 0.08:
            local = f"{fake.user_name()}{rng.randrange(100)}"
            while local in emails:
                local += str(rng.randrange(10))
            emails.add(local)
            email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
        guardian = {
            "id": guardian_id,
            "name": g_name,
            "mobile": mobile(rng),
            "email": email,
            "id_number": resident_id(rng, g_born, male_guardian),
            "address": fake.address(),
            "relation": relation,
        }
        data["guardians"].append(guardian)
        children = 1 if rng.random() < 0.8 else rng.choice((2, 3))
        for _ in range(min(children, students - student_id)):
            student_id += 1
            _student(
                rng,
                fake,
                data,
                student_id,
                guardian,
                surname if male_guardian else fake.last_name(),
                closure_date,
            )
    return data


def _student(
    rng: random.Random,
    fake: Faker,
    data: dict[str, list[dict]],
    sid: int,
    guardian: dict,
    surname: str,
    closure_date: date,
) -> None:
    male = rng.random() < 0.5
    age = rng.randint(4, 13) if rng.random() < 0.85 else rng.randint(14, 17)
    # exactly `age` years old on the closure date
    born = _random_day(
        rng, _years_before(closure_date, age + 1) + timedelta(1), _years_before(closure_date, age)
    )
    first_possible = max(date(closure_date.year - 4, 1, 1), born + timedelta(days=3 * 365 + 1))
    enrolled = _random_day(rng, first_possible, closure_date - timedelta(days=60))
    grade_index = min(max(age - 6, 0), len(GRADES) - 1)
    data["students"].append(
        {
            "id": sid,
            "name": surname + (fake.first_name_male() if male else fake.first_name_female()),
            "gender": "男" if male else "女",
            "birth_date": born,
            "id_number": resident_id(rng, born, male),
            "guardian_id": guardian["id"],
            "school": f"{fake.city_name()}第{rng.randint(1, 40)}{'小学' if age < 12 else '中学'}",
            "grade": GRADES[grade_index],
            "enrolled_on": enrolled,
            "health_notes": rng.choice(HEALTH) if rng.random() < 0.3 else rng.choice((None, "", "无")),
        }
    )
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        _contract(rng, data, sid, guardian, enrolled, closure_date)
    for _ in range(rng.choice((1, 2, 2, 3))):
        written = _random_day(rng, enrolled, closure_date)
        body = rng.choice(NOTE_TEXTS).format(day=f"{_random_day(rng, written, closure_date):%m月%d日}")
        roll = rng.random()
        if roll < 0.08:
            body += f"家长手机：{guardian['mobile']}，已电话沟通。"
        elif roll < 0.15:
            body += f"退费申请人身份证号{guardian['id_number']}，待财务核对。"
        data["notes"].append(
            {"id": len(data["notes"]) + 1, "student_id": sid, "written_on": written, "body": body}
        )


def _contract(
    rng: random.Random,
    data: dict[str, list[dict]],
    sid: int,
    guardian: dict,
    enrolled: date,
    closure_date: date,
) -> None:
    course = rng.choice(data["courses"])
    cid = len(data["contracts"]) + 1
    signed = _random_day(rng, enrolled, closure_date - timedelta(days=30))
    card = bank_card(rng)
    amount = course["price"] * rng.choice((1, 1, 2))
    data["contracts"].append(
        {
            "id": cid,
            "student_id": sid,
            "course_id": course["id"],
            "signed_on": signed,
            "amount": amount,
            "payer_bank_card": card,
            "status": _weighted(rng, STATUSES),
        }
    )
    for _ in range(rng.randint(3, 6)):
        data["attendance"].append(
            {
                "id": len(data["attendance"]) + 1,
                "student_id": sid,
                "course_id": course["id"],
                "lesson_date": _random_day(rng, signed, closure_date),
                "present": rng.random() < 0.9,
            }
        )
    data["accounting_records"].append(
        {
            "id": cid,
            "voucher_no": "",  # numbered once all are known
            "booked_on": signed,
            "amount": amount,
            "payer_name": guardian["name"],
            "payer_bank_card": card,
            "payer_mobile": guardian["mobile"],
            "contract_ref": cid,
            "summary": f"收{course['title']}（{course['level']}）课程费",
        }
    )


def _number_vouchers(records: list[dict]) -> None:
    """记-YYYYMM-NNNN, numbered per month in booking order, as a bookkeeper would."""
    per_month: dict[str, int] = {}
    for rec in sorted(records, key=lambda r: (r["booked_on"], r["id"])):
        month = f"{rec['booked_on']:%Y%m}"
        per_month[month] = per_month.get(month, 0) + 1
        rec["voucher_no"] = f"记-{month}-{per_month[month]:04d}"


def _batches(rows: list[dict]) -> Iterator[list[dict]]:
    for i in range(0, len(rows), BATCH):
        yield rows[i : i + BATCH]


def seed(
    url: str, *, students: int = 500, seed: int = 20261122, closure_date: date = date(2026, 12, 31)
) -> dict[str, int]:
    """Drop and recreate the demo school's tables at `url` and fill them; returns table -> row count."""
    data = _rows(students, seed, closure_date)
    _number_vouchers(data["accounting_records"])
    md = _metadata()
    engine = sa.create_engine(url)
    try:
        md.drop_all(engine)
        md.create_all(engine)
        with engine.begin() as conn:
            for name in TABLES:
                for batch in _batches(data[name]):
                    conn.execute(md.tables[name].insert(), batch)
    finally:
        engine.dispose()
    return {name: len(data[name]) for name in TABLES}


def planted_values(url: str) -> dict[str, list[str]]:
    """Identifiers present in a seeded database, by category. For tests that check erasure removed
    them; never log or print what this returns."""
    queries = {
        "cn_resident_id": ("SELECT id_number FROM guardians", "SELECT id_number FROM students"),
        "cn_mobile": ("SELECT mobile FROM guardians", "SELECT payer_mobile FROM accounting_records"),
        "email": ("SELECT email FROM guardians",),
        "bank_card": (
            "SELECT payer_bank_card FROM contracts",
            "SELECT payer_bank_card FROM accounting_records",
        ),
    }
    engine = sa.create_engine(url)
    found: dict[str, list[str]] = {}
    try:
        with engine.connect() as conn:
            for category, sqls in queries.items():
                values: set[str] = set()
                for sql in sqls:
                    values |= {str(v) for (v,) in conn.execute(sa.text(sql)) if v}
                found[category] = sorted(values)
    finally:
        engine.dispose()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.demo.seed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--url", help="SQLAlchemy URL (default: SQLite file under the state folder)")
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args(argv)
    url = args.url
    if not url:
        path = state_dir() / "demo" / "demo_academy.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    counts = seed(url, students=args.students, seed=args.seed)
    print(f"Seeded {sa.engine.make_url(url).render_as_string(hide_password=True)}:")
    for table, n in counts.items():
        print(f"  {table}: {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
