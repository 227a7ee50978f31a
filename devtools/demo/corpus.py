"""A labelled corpus for classification quality: tables whose truth is known, decoys included.

Three tables name their columns in pinyin initials (`xs_jbxx`), Chinese (`客户`) and English
(`members`). Each column knows the categories it holds ([] for business data); each free-text value
knows the identifiers embedded in it. Decoys are the values that fool naive scanners: 18-digit
order numbers, resident IDs with a wrong check digit, 11-digit numbers starting 10 or 12, card-like
numbers failing Luhn, unified social credit codes (an organisation's, not a person's), 400 service
numbers, course codes (also dated ones with a permit's letter, C20240315), QQ group numbers,
prices, version strings (three and four parts). Truth is checked with python-stdnum where it can
be (independently of our detectors), so a decoy that happens to be valid is replaced.

    corpus = build_corpus(rows=300, seed=1)
    load_corpus(corpus, "sqlite:///corpus.db")
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import date, timedelta

import sqlalchemy as sa
from faker import Faker
from stdnum import luhn
from stdnum.cn import ric, uscc

from devtools.demo.seed import REGIONS, bank_card, mobile, resident_id

HEALTH_NOTES = ("对花生过敏", "有哮喘，备用吸入器", "确诊多动症", "去年做过手术", "每天服药两次")
CLEAN_NOTES = ("上课认真，进步明显", "喜欢画画", "周末来上课", "作业按时完成", "需要多练习口语")


@dataclass
class CorpusColumn:
    name: str
    type: str  # "text", "int", "date"
    categories: set[str]
    values: list = field(default_factory=list)
    #: per value of a free-text column: the (category, compacted value) pairs embedded in it
    embedded: list[set[tuple[str, str]]] | None = None


@dataclass
class CorpusTable:
    name: str
    columns: list[CorpusColumn]


@dataclass
class Corpus:
    tables: list[CorpusTable]

    def column(self, table: str, column: str) -> CorpusColumn:
        t = next(t for t in self.tables if t.name == table)
        return next(c for c in t.columns if c.name == column)


def _ric_valid(number: str) -> bool:
    try:
        return ric.is_valid(number)
    except Exception:  # noqa: BLE001 - stdnum's region table lacks some entries; such a number is no ID
        return False


class _Make:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("zh_CN")
        self.fake.seed_instance(seed)

    def born(self, young: bool = False) -> date:
        start = date(2012, 1, 1) if young else date(1960, 1, 1)
        return start + timedelta(days=self.rng.randrange(4000 if young else 14000))

    def resident_id(self) -> str:
        return resident_id(self.rng, self.born(), self.rng.random() < 0.5)

    def bad_id(self) -> str:
        good = self.resident_id()
        return good[:-1] + next(c for c in "0123456789X" if c != good[-1] and not _ric_valid(good[:-1] + c))

    def mobile(self, styled: bool = False) -> str:
        number = mobile(self.rng)
        if not styled:
            return number
        style = self.rng.randrange(4)
        return [
            number,
            f"{number[:3]}-{number[3:7]}-{number[7:]}",
            f"+86 {number[:3]} {number[3:7]} {number[7:]}",
            f"0086{number}",
        ][style]

    def card(self) -> str:
        return bank_card(self.rng)

    def email(self) -> str:
        return f"{self.fake.user_name()}{self.rng.randrange(1000)}@{self.rng.choice(('qq.com', '163.com', 'example.cn'))}"

    def landline(self) -> str:
        area, digits = self.rng.choice((("010", 8), ("021", 8), ("0571", 8), ("0755", 8), ("0931", 7)))
        subscriber = str(self.rng.randrange(2, 9)) + "".join(
            str(self.rng.randrange(10)) for _ in range(digits - 1)
        )
        return self.rng.choice((f"{area}-{subscriber}", f"({area}) {subscriber}", f"{area}{subscriber}"))

    def passport(self) -> str:
        digits = "".join(str(self.rng.randrange(10)) for _ in range(8))
        return self.rng.choice(("E", "G", "C", "H")) + digits

    def ip(self) -> str:
        return f"{self.rng.choice((58, 61, 114, 183, 223))}.{self.rng.randrange(256)}.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"

    def order_no(self) -> str:
        while True:
            number = "".join(str(self.rng.randrange(10)) for _ in range(18))
            if not _ric_valid(number) and not luhn.is_valid(number):
                return number

    def not_a_card(self) -> str:
        while True:
            number = "62" + "".join(str(self.rng.randrange(10)) for _ in range(14))
            if not luhn.is_valid(number):
                return number

    def org_code(self) -> str:
        body = (
            "9111"
            + "".join(str(self.rng.randrange(10)) for _ in range(4))
            + "".join(self.rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(9))
        )
        return body + uscc.calc_check_digit(body)

    def wechat(self) -> str:
        return f"wx_{self.fake.user_name()[:12]}{self.rng.randrange(100)}"

    def course_code(self) -> str:
        """A dated code with a permit's or passport's letter: C20240315, E20230001."""
        year = self.rng.randrange(2018, 2027)
        if self.rng.random() < 0.5:
            tail = f"{self.rng.randrange(1, 13):02d}{self.rng.randrange(1, 29):02d}"
        else:
            tail = f"{self.rng.randrange(1, 1000):04d}"  # the year's serial
        return f"{self.rng.choice('CEHMG')}{year}{tail}"

    def version4(self) -> str:
        return ".".join(str(self.rng.randrange(n)) for n in (10, 20, 50, 300))

    def eleven_digits(self) -> str:
        return self.rng.choice(("10", "12")) + "".join(str(self.rng.randrange(10)) for _ in range(9))


def _embedded(make: _Make, kinds: list[str]) -> tuple[str, set[tuple[str, str]]]:
    """A remark quoting identifiers of `kinds`, with its truth."""
    truth: set[tuple[str, str]] = set()
    parts = [make.rng.choice(CLEAN_NOTES)]
    for kind in kinds:
        if kind == "cn_mobile":
            number = make.mobile(styled=True)
            parts.append(f"家长电话{number}")
            truth.add(("cn_mobile", "".join(ch for ch in number if ch.isdigit())[-11:]))
        elif kind == "cn_resident_id":
            number = make.resident_id()
            parts.append(f"身份证号：{number}")
            truth.add(("cn_resident_id", number))
        elif kind == "email":
            address = make.email()
            parts.append(f"邮箱 {address}")
            truth.add(("email", address))
        elif kind == "bank_card":
            number = make.card()
            parts.append(f"退费卡号{number}")
            truth.add(("bank_card", number))
        elif kind == "phone":
            number = make.landline()
            parts.append(f"座机 {number}")
            truth.add(("phone", number))
        elif kind == "passport":
            number = make.passport()
            parts.append(f"{make.rng.choice(('护照号：', '港澳通行证 ', 'passport no. '))}{number}")
            truth.add(("passport", number))
        elif kind == "im_account":
            if make.rng.random() < 0.5:
                account = make.wechat()
                parts.append(f"{make.rng.choice(('微信: ', '家长微信 ', 'WeChat ID '))}{account}")
            else:
                account = str(make.rng.randrange(10**5, 10**10))
                parts.append(f"{make.rng.choice(('QQ: ', 'QQ号', 'QQ号码：'))}{account}")
            truth.add(("im_account", account))
        elif kind == "health":
            note = make.rng.choice(HEALTH_NOTES)
            parts.append(note)
            truth.add(("health", note))
        elif kind == "decoy":
            parts.append(
                make.rng.choice(
                    (
                        f"订单号{make.order_no()}",
                        f"统一社会信用代码{make.org_code()}",
                        f"编号{make.eleven_digits()}",
                        f"客服热线400-{make.rng.randrange(100, 999)}-{make.rng.randrange(1000, 9999)}",
                        f"学费{make.rng.randrange(1000, 9999)}.00元",
                        f"版本 {make.rng.randrange(1, 9)}.{make.rng.randrange(10)}.{make.rng.randrange(10)}",
                        f"固件版本 {make.version4()}",
                        f"课程编号{make.course_code()}",
                        f"加入班级群 QQ群{make.rng.randrange(10**5, 10**9)}",
                        "关注我们的WeChat official account",
                    )
                )
            )
    return "，".join(parts), truth


def _free_text(make: _Make, rows: int, kinds: tuple[str, ...]) -> CorpusColumn:
    values, embedded = [], []
    for _ in range(rows):
        chosen = [k for k in kinds if make.rng.random() < 0.25] + (
            ["decoy"] if make.rng.random() < 0.5 else []
        )
        text, truth = _embedded(make, chosen)
        values.append(text)
        embedded.append(truth)
    categories = {cat for truth in embedded for cat, _ in truth}
    return CorpusColumn("", "text", categories, values, embedded)


def build_corpus(rows: int = 300, seed: int = 1) -> Corpus:
    make = _Make(seed)

    def col(name: str, categories: set[str], gen, kind: str = "text") -> CorpusColumn:
        return CorpusColumn(name, kind, categories, [gen() for _ in range(rows)])

    def remark(name: str, kinds: tuple[str, ...]) -> CorpusColumn:
        c = _free_text(make, rows, kinds)
        c.name = name
        return c

    pinyin = CorpusTable(
        "xs_jbxx",
        [
            col("xm", {"name"}, make.fake.name),
            col("xb", {"gender"}, lambda: make.rng.choice(("男", "女"))),
            col("csrq", {"birth_date"}, lambda: make.born(young=True), "date"),
            col("sfzh", {"cn_resident_id"}, make.resident_id),
            col("jtzz", {"address"}, make.fake.address),
            col("jhrxm", {"name"}, make.fake.name),
            col("jhrsjh", {"cn_mobile"}, make.mobile),
            remark("bz", ("cn_mobile", "cn_resident_id", "health")),
            col("ddh", set(), make.order_no),
            col("kcdm", set(), lambda: f"KC{make.rng.randrange(2020, 2027)}-{make.rng.randrange(1000):03d}"),
        ],
    )
    chinese = CorpusTable(
        "客户",
        [
            col("姓名", {"name"}, make.fake.name),
            col("手机", {"cn_mobile"}, lambda: make.mobile(styled=True)),
            col("身份证号", {"cn_resident_id"}, make.resident_id),
            col("银行卡号", {"bank_card"}, make.card),
            col("家庭住址", {"address"}, make.fake.address),
            col(
                "资料",
                {"name", "cn_mobile"},
                lambda: json.dumps(
                    {
                        "监护人": {"姓名": make.fake.name(), "电话": make.mobile()},
                        "年级": make.rng.randrange(1, 7),
                    },
                    ensure_ascii=False,
                ),
            ),
            col("统一社会信用代码", set(), make.org_code),
            col("金额", set(), lambda: f"{make.rng.randrange(100, 20000)}.{make.rng.randrange(100):02d}"),
            col("卡号校验失败", set(), make.not_a_card),
        ],
    )
    english = CorpusTable(
        "members",
        [
            col(
                "full_name",
                {"name"},
                lambda: make.rng.choice(("Zhang Wei", "Wang Fang", "Li Na", "Liu Yang", "Chen Jing")),
            ),
            col("mobile", {"cn_mobile"}, lambda: make.mobile(styled=True)),
            col("email", {"email"}, make.email),
            col("bank_card", {"bank_card"}, make.card),
            col("passport_no", {"passport"}, make.passport),
            col("login_ip", {"ip_address"}, make.ip),
            col("phone", {"phone"}, make.landline),
            col("wechat", {"im_account"}, make.wechat),
            col("qq", {"im_account"}, lambda: make.rng.randrange(10**5, 10**10), "int"),
            remark("remark", ("email", "bank_card", "phone", "passport", "im_account")),
            col("order_no", set(), make.order_no),
            col(
                "app_version",
                set(),
                lambda: f"{make.rng.randrange(1, 9)}.{make.rng.randrange(10)}.{make.rng.randrange(20)}",
            ),
            col(
                "hotline",
                set(),
                lambda: f"400-{make.rng.randrange(100, 999)}-{make.rng.randrange(1000, 9999)}",
            ),
            col("ref_no", set(), make.eleven_digits),
            col("bad_id", set(), make.bad_id),
            col("course_code", set(), make.course_code),
            col("region_code", set(), lambda: make.rng.choice(REGIONS)),
        ],
    )
    return Corpus([pinyin, chinese, english])


def load_corpus(corpus: Corpus, url: str) -> None:
    """(Re)create the corpus's tables at `url` (any SQLAlchemy URL) and fill them."""
    md = sa.MetaData()
    types = {"text": sa.Text, "int": sa.BigInteger, "date": sa.Date}
    tables = []
    for t in corpus.tables:
        tables.append(
            (
                sa.Table(
                    t.name,
                    md,
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    *[sa.Column(c.name, types[c.type]) for c in t.columns],
                ),
                t,
            )
        )
    engine = sa.create_engine(url)
    try:
        md.drop_all(engine)
        md.create_all(engine)
        with engine.begin() as conn:
            for table, t in tables:
                rows = [
                    {"id": i + 1, **{c.name: c.values[i] for c in t.columns}}
                    for i in range(len(t.columns[0].values))
                ]
                conn.execute(table.insert(), rows)
    finally:
        engine.dispose()
