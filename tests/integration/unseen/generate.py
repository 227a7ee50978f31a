"""Four databases Dereg's rules were not written against, with their ground truth (issue 16).

    python -m tests.integration.unseen.generate [--truth DIR]

- `clinic` (PostgreSQL): a dental practice. Patients split into surname and given name, guardians
  of minors, appointments with complaints, diagnoses, prescriptions, invoices to people or
  companies, staff, an SMS log, lab results in JSONB, a settings table with the clinic's own
  hotline and e-mails, a CMS of articles, a drug catalogue with EAN barcodes.
- `school` (MariaDB): a training school with pinyin column names (xingming, shouji, sfzh, dizhi,
  jzxm...) and a membership app with camelCase ones (openId, nickName, realName, mobilePhone), file
  names holding names and mobiles, WeChat payment notifications, remarks with names and phones,
  a settings table and course summaries carrying the school's hotline, empty tables.
- `crm` (PostgreSQL): an English-named SaaS CRM. Companies (not people) with addresses and
  switchboards, contacts and leads with Latin names, street addresses and zip codes, users with
  JSONB settings, events with JSONB properties holding IPs, a webhook log with WeChat openids.
- `hr` (MariaDB): an HR system with Chinese table and column names (员工, 身份证号, 银行卡号, 紧急联系人,
  备注, 请假申请, 车辆登记...), a company-information table and departments. Written after the rules
  the first three led to and scanned once before any change (a held-out case).

Values are synthetic, from one seeded `random.Random` (no Faker, so no version drift): resident ID
numbers with GB 11643 check digits, Luhn-valid UnionPay cards, mobiles, Chinese, pinyin and Latin
names, Chinese and Western addresses; decoys: 400/800/95xxx hotlines, EAN-13 barcodes, 18- to
28-digit order and transaction numbers, company credit codes (GB 32100), empty columns with
personal-sounding names.

The truth of each column is written beside its definition (`P(...)` personal, `CLEAN`, `AMBIG`,
`EMPTY(...)`), before and independently of what a scan says; `truth(db)` gives it in the
realworld packs' format (`truth`, `clean`, `ambiguous`, `decoys`, `rows`), scored by
`dereg.classify.quality.score`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

SEED = 1612
CLOSURE = dt.date(2026, 12, 31)

# ---------------------------------------------------------------------------------------------
# labels


@dataclass(frozen=True)
class Label:
    kind: str  # personal, clean, ambiguous, empty
    categories: tuple[str, ...] = ()
    whose: str = "customer"
    note: str = ""
    decoy: bool = False


def P(*categories: str, whose: str = "customer", note: str = "") -> Label:
    return Label("personal", categories, whose, note)


def EMPTY(*categories: str, note: str = "") -> Label:
    return Label("empty", categories, note=note)


CLEAN = Label("clean")
DECOY = Label("clean", decoy=True)


def AMBIG(note: str) -> Label:
    return Label("ambiguous", note=note)


SENSITIVE = {"cn_resident_id", "bank_card", "health", "credential", "passport", "biometric_face"}


@dataclass
class Table:
    name: str
    columns: list[tuple[str, str, Label]]  # (name, SQL type, label)
    rows: list[tuple] = field(default_factory=list)
    key: str = "id"


# ---------------------------------------------------------------------------------------------
# value makers

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华玉萍红娥玲芬燕彬鹏辉建国文斌宇浩凯晨欣怡子涵梓轩一诺雨彤思远佳琪晓峰志强海燕俊杰婷雪梅春"
PINYIN_SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Huang",
    "Zhao",
    "Wu",
    "Zhou",
    "Xu",
    "Sun",
    "Ma",
    "Zhu",
    "Hu",
    "Guo",
    "Lin",
    "He",
    "Gao",
    "Luo",
]
PINYIN_GIVEN = [
    "Wei",
    "Fang",
    "Na",
    "Xiuying",
    "Min",
    "Jing",
    "Li",
    "Qiang",
    "Lei",
    "Jun",
    "Yang",
    "Yong",
    "Yan",
    "Jie",
    "Juan",
    "Tao",
    "Ming",
    "Chao",
    "Xia",
    "Ping",
    "Hao",
    "Yuxuan",
    "Zihan",
    "Yichen",
]
LATIN_FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Emily",
    "Daniel",
    "Olivia",
    "Lucas",
    "Sophie",
    "Grace",
    "Kevin",
    "Amy",
    "Ethan",
    "Chloe",
]
LATIN_LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Wilson",
    "Anderson",
    "Taylor",
    "Thomas",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "O'Brien",
    "Nguyen",
    "Chen",
    "Wong",
    "Schmidt",
    "Dubois",
]
STREETS_EN = [
    "Main St",
    "Oak Avenue",
    "Maple Drive",
    "Cedar Lane",
    "Sunset Blvd",
    "Elm Street",
    "Park Road",
    "Lakeview Terrace",
    "Hillcrest Way",
    "River Road",
    "Washington Ave",
    "King Street West",
    "Queen's Road",
    "Harbour Drive",
]
CITIES_EN = [
    ("San Jose", "CA"),
    ("Austin", "TX"),
    ("Seattle", "WA"),
    ("Boston", "MA"),
    ("Denver", "CO"),
    ("Portland", "OR"),
    ("Toronto", "ON"),
    ("Vancouver", "BC"),
    ("Chicago", "IL"),
    ("Miami", "FL"),
]
# (province, city, district, region code, postcode)
DISTRICTS = [
    ("北京市", "北京市", "朝阳区", "110105", "100020"),
    ("上海市", "上海市", "浦东新区", "310115", "200120"),
    ("广东省", "深圳市", "南山区", "440305", "518052"),
    ("广东省", "广州市", "天河区", "440106", "510630"),
    ("浙江省", "杭州市", "西湖区", "330106", "310013"),
    ("四川省", "成都市", "武侯区", "510107", "610041"),
    ("湖北省", "武汉市", "洪山区", "420111", "430070"),
    ("江苏省", "南京市", "鼓楼区", "320106", "210008"),
    ("陕西省", "西安市", "雁塔区", "610113", "710061"),
    ("山东省", "济南市", "历下区", "370102", "250014"),
]
ROADS = [
    "中山路",
    "人民路",
    "建设路",
    "解放大道",
    "科技园南路",
    "文三路",
    "学府路",
    "长江路",
    "高新四路",
    "花园街",
]
ESTATES = ["阳光花园", "锦绣家园", "碧水湾", "翠苑小区", "东方名城", "金色港湾", "华润城", "保利香槟"]
MAIL_DOMAINS = ["qq.com", "163.com", "126.com", "gmail.com", "outlook.com", "sina.com", "foxmail.com"]
ALLERGIES = [
    "无",
    "无",
    "无",
    "青霉素过敏",
    "对海鲜过敏",
    "磺胺类药物过敏",
    "有哮喘病史",
    "高血压，服用降压药",
    "糖尿病二型",
    "无已知过敏",
]
COMPLAINTS = [
    "右下后牙咬合痛三天",
    "左上智齿反复肿痛",
    "牙龈出血两周",
    "要求洗牙",
    "前牙冷热敏感",
    "种植牙复查",
    "正畸复诊调整",
    "牙齿松动",
    "儿童窝沟封闭",
    "补牙后疼痛",
]
DIAGNOSES = [
    ("K02.1", "深龋，46牙"),
    ("K04.0", "急性牙髓炎"),
    ("K05.1", "慢性龈炎"),
    ("K01.1", "阻生智齿38"),
    ("K03.6", "牙石沉积"),
    ("K07.3", "牙列拥挤，安氏II类"),
    ("K08.1", "牙列缺损，拟行种植修复"),
]
DRUGS = [
    ("阿莫西林胶囊", "0.25g*24粒"),
    ("甲硝唑片", "0.2g*21片"),
    ("布洛芬缓释胶囊", "0.3g*20粒"),
    ("西吡氯铵含漱液", "200ml"),
    ("头孢克洛胶囊", "0.25g*12粒"),
    ("复方氯己定含漱液", "150ml"),
]
COMPANIES = [
    "深圳市腾飞科技有限公司",
    "杭州云栖网络技术有限公司",
    "北京华夏建设集团有限公司",
    "成都天府软件园有限公司",
    "上海浦江贸易有限公司",
    "武汉光谷生物医药有限公司",
    "南京紫金教育咨询中心",
    "广州白云国际物流有限公司",
]
COMPANIES_EN = [
    "Acme Robotics Inc.",
    "Northwind Traders LLC",
    "Blue Harbor Logistics Ltd.",
    "Summit Analytics Co.",
    "Greenfield Foods Inc.",
    "Pioneer Medical Devices GmbH",
    "Orbit Software Ltd.",
    "Lakeside Capital Partners",
]
INDUSTRIES = ["Software", "Logistics", "Retail", "Healthcare", "Finance", "Manufacturing", "Education"]


class Maker:
    """Synthetic values from one seeded generator."""

    def __init__(self, seed: int) -> None:
        self.r = Random(seed)

    def pick(self, seq):
        return self.r.choice(seq)

    def digits(self, n: int) -> str:
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def cn_name(self) -> str:
        given = self.pick(GIVEN) + (self.pick(GIVEN) if self.r.random() < 0.7 else "")
        return self.pick(SURNAMES) + given

    def cn_name_parts(self) -> tuple[str, str]:
        name = self.cn_name()
        return name[0], name[1:]

    def pinyin_name(self) -> str:
        return f"{self.pick(PINYIN_SURNAMES)} {self.pick(PINYIN_GIVEN)}"

    def latin(self) -> tuple[str, str]:
        return self.pick(LATIN_FIRST), self.pick(LATIN_LAST)

    def mobile(self) -> str:
        return (
            self.pick(["13", "15", "17", "18", "19", "14", "16"]) + str(self.r.randint(0, 9)) + self.digits(8)
        )

    def landline(self) -> str:
        return (
            self.pick(["010-", "021-", "0755-", "020-", "0571-", "028-"])
            + str(self.r.randint(2, 8))
            + self.digits(7)
        )

    def birth(self, lo: int = 1950, hi: int = 2022) -> dt.date:
        start = dt.date(lo, 1, 1)
        return start + dt.timedelta(days=self.r.randint(0, (dt.date(hi, 12, 31) - start).days))

    def resident_id(self, born: dt.date, district=None) -> str:
        code = (district or self.pick(DISTRICTS))[3]
        body = code + born.strftime("%Y%m%d") + self.digits(3)
        weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
        total = sum(int(c) * w for c, w in zip(body, weights, strict=True))
        return body + "10X98765432"[total % 11]

    def bank_card(self) -> str:
        prefix = self.pick(["622202", "622848", "621700", "622588", "621483", "623058"])
        body = prefix + self.digits(self.pick([9, 12]))
        total = 0
        for i, c in enumerate(reversed(body)):
            d = int(c)
            if i % 2 == 0:
                d *= 2
                d -= 9 if d > 9 else 0
            total += d
        return body + str((10 - total % 10) % 10)

    def uscc(self) -> str:
        alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
        weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
        body = "91" + self.pick(DISTRICTS)[3] + "".join(self.pick(alphabet) for _ in range(9))
        total = sum(alphabet.index(c) * w for c, w in zip(body, weights, strict=True))
        return body + alphabet[(31 - total % 31) % 31]

    def email(self, local: str | None = None) -> str:
        local = local or self.pick(
            ["zhang", "li", "wang", "xiao", "amy", "tom", "jack", "lily"]
        ) + self.digits(self.r.randint(2, 6))
        return f"{local}@{self.pick(MAIL_DOMAINS)}"

    def address(self, district=None) -> str:
        p, c, d, _, _ = district or self.pick(DISTRICTS)
        head = "" if p == c else p
        return f"{head}{c}{d}{self.pick(ROADS)}{self.r.randint(1, 999)}号{self.pick(ESTATES)}{self.r.randint(1, 30)}栋{self.r.randint(1, 32)}0{self.r.randint(1, 6)}室"

    def street_en(self) -> str:
        return f"{self.r.randint(1, 9999)} {self.pick(STREETS_EN)}"

    def openid(self) -> str:
        alphabet = string.ascii_letters + string.digits + "_-"
        while True:
            s = "o" + "".join(self.pick(alphabet) for _ in range(27))
            if (
                any(c.isupper() for c in s)
                and any(c.islower() for c in s[1:])
                and any(c.isdigit() for c in s)
            ):
                return s

    def qq(self) -> str:
        return str(self.r.randint(1, 9)) + self.digits(self.r.randint(6, 9))

    def wechat_id(self) -> str:
        return (
            self.pick(["wxid_", "", ""])
            + self.pick(string.ascii_lowercase)
            + "".join(self.pick(string.ascii_lowercase + string.digits) for _ in range(self.r.randint(6, 12)))
        )

    def ip(self) -> str:
        return f"{self.pick([36, 58, 101, 112, 113, 117, 120, 183, 222])}.{self.r.randint(0, 255)}.{self.r.randint(0, 255)}.{self.r.randint(1, 254)}"

    def moment(self, lo: int = 2021) -> dt.datetime:
        return dt.datetime(lo, 1, 1) + dt.timedelta(
            seconds=self.r.randint(0, (dt.datetime(2026, 11, 30) - dt.datetime(lo, 1, 1)).days * 86400)
        )

    def order_no(self, n: int = 18) -> str:
        return "2026" + self.digits(n - 4)

    def ean13(self) -> str:
        body = "69" + self.digits(10)
        total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body))
        return body + str((10 - total % 10) % 10)

    def bcrypt(self) -> str:
        alphabet = string.ascii_letters + string.digits + "./"
        return "$2a$10$" + "".join(self.pick(alphabet) for _ in range(53))

    def plate(self) -> str:
        """A car's plate: province, office letter, five of which at most two letters (GA 36)."""
        tail = [self.pick(string.digits) for _ in range(5)]
        for i in self.r.sample(range(5), self.r.randint(0, 2)):
            tail[i] = self.pick("ABCDEFGHJKLMNPQRSTUVWXYZ")
        return self.pick(PLATES) + self.pick("ABCDEF") + "".join(tail)

    def maybe(self, p: float, value):
        return value if self.r.random() < p else None


# ---------------------------------------------------------------------------------------------
# clinic (PostgreSQL)

CLINIC_HOTLINE = "400-820-6688"
CLINIC_LANDLINE = "0755-86356688"


def clinic(n: int = 2500) -> list[Table]:
    m = Maker(SEED)
    T = "TEXT"
    staff = Table(
        "staff",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("name", "VARCHAR(40)", P("name", whose="staff")),
            ("role", "VARCHAR(20)", CLEAN),
            ("mobile", "VARCHAR(20)", P("cn_mobile", whose="staff")),
            ("work_email", "VARCHAR(80)", P("email", whose="staff")),
            (
                "licence_no",
                "VARCHAR(30)",
                AMBIG("practitioner licence number: the dentist's, public on the licence register"),
            ),
            ("login", "VARCHAR(40)", P("account", whose="staff")),
            ("password_hash", "VARCHAR(80)", P("credential", whose="staff")),
            ("active", "BOOLEAN", CLEAN),
        ],
    )
    for i in range(1, 41):
        name = m.cn_name()
        staff.rows.append(
            (
                i,
                name,
                m.pick(["医生", "护士", "前台", "医生", "财务"]),
                m.mobile(),
                f"doc{i:03d}@smiledental.cn",
                "1104403" + m.digits(8),
                f"staff{i:03d}",
                m.bcrypt(),
                m.r.random() < 0.9,
            )
        )

    patient = Table(
        "patient",
        [
            ("patient_id", "INTEGER PRIMARY KEY", CLEAN),
            ("chart_no", "VARCHAR(20)", DECOY),
            ("surname", "VARCHAR(8)", P("name", note="one character")),
            ("given_name", "VARCHAR(8)", P("name")),
            ("name_pinyin", "VARCHAR(40)", P("name", note="Zhang Wei")),
            ("sex", "CHAR(1)", P("gender")),
            ("dob", "DATE", P("birth_date")),
            ("id_card_no", "VARCHAR(18)", P("cn_resident_id")),
            ("mobile", "VARCHAR(20)", P("cn_mobile")),
            ("email", "VARCHAR(80)", P("email")),
            ("home_addr", "VARCHAR(200)", P("address")),
            ("postcode", "VARCHAR(10)", P("address")),
            ("emergency_contact", "VARCHAR(40)", P("name")),
            ("emergency_phone", "VARCHAR(20)", P("cn_mobile")),
            ("allergies", "VARCHAR(200)", P("health")),
            ("wechat_openid", "VARCHAR(40)", P("im_account")),
            ("member_level", "VARCHAR(10)", CLEAN),
            ("balance", "NUMERIC(10,2)", CLEAN),
            ("remark", T, P("name", "cn_mobile", note="free text: 'X的家属 138...'")),
            ("created_at", "TIMESTAMP", CLEAN),
        ],
        key="patient_id",
    )
    guardian = Table(
        "guardian",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("patient_id", "INTEGER", CLEAN),
            (
                "relation",
                "VARCHAR(10)",
                AMBIG(
                    "the guardian's relation to the patient (母亲): 家庭关系 is personal basic information "
                    "in GB/T 35273 Annex A; round 2 labels such columns personal"
                ),
            ),
            ("guardian_name", "VARCHAR(40)", P("name")),
            ("phone", "VARCHAR(20)", P("cn_mobile")),
            ("id_number", "VARCHAR(18)", P("cn_resident_id")),
        ],
    )
    minors = []
    for pid in range(1, n + 1):
        d = m.pick(DISTRICTS)
        born = m.birth(1945, 2023)
        sur, given = m.cn_name_parts()
        minor = born > dt.date(2012, 12, 31)
        if minor:
            minors.append(pid)
        remark = m.pick(
            [
                None,
                None,
                "",
                "VIP客户",
                f"{m.cn_name()}介绍来的",
                f"家属{m.cn_name()} {m.mobile()}",
                "怕疼，需要耐心沟通",
                f"联系人：{m.cn_name()}，电话{m.mobile()}",
                "老客户，每年洗牙",
            ]
        )
        patient.rows.append(
            (
                pid,
                f"DC{pid:07d}",
                sur,
                given,
                f"{m.pick(PINYIN_SURNAMES)} {m.pick(PINYIN_GIVEN)}",
                m.pick("MF"),
                born,
                m.maybe(0.85, m.resident_id(born, d)),
                m.mobile(),
                m.maybe(0.5, m.email()),
                m.maybe(0.8, m.address(d)),
                m.maybe(0.6, d[4]),
                m.maybe(0.7, m.cn_name()),
                m.maybe(0.7, m.mobile()),
                m.pick(ALLERGIES),
                m.maybe(0.6, m.openid()),
                m.pick(["普通", "银卡", "金卡"]),
                round(m.r.random() * 2000, 2),
                remark,
                m.moment(),
            )
        )
        if minor or m.r.random() < 0.05:
            guardian.rows.append(
                (
                    len(guardian.rows) + 1,
                    pid,
                    m.pick(["父亲", "母亲", "祖父", "外婆"]),
                    m.cn_name(),
                    m.mobile(),
                    m.resident_id(m.birth(1960, 1995)),
                )
            )

    appointment = Table(
        "appointment",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("patient_id", "INTEGER", CLEAN),
            ("dentist_id", "INTEGER", CLEAN),
            ("chair", "SMALLINT", CLEAN),
            ("start_at", "TIMESTAMP", CLEAN),
            ("status", "VARCHAR(12)", CLEAN),
            ("chief_complaint", "VARCHAR(200)", P("health")),
            ("note", T, P("cn_mobile", "name", note="free text: reschedule requests with a number")),
        ],
    )
    diagnosis = Table(
        "diagnosis",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("appointment_id", "INTEGER", CLEAN),
            (
                "icd10",
                "VARCHAR(10)",
                AMBIG("a diagnosis code: health information only with the patient's link"),
            ),
            ("findings", "TEXT", P("health")),
            ("tooth", "VARCHAR(10)", AMBIG("tooth position")),
        ],
    )
    prescription = Table(
        "prescription",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("diagnosis_id", "INTEGER", CLEAN),
            ("drug", "VARCHAR(40)", AMBIG("a prescribed drug: health only with the patient's link")),
            ("spec", "VARCHAR(40)", CLEAN),
            ("qty", "INTEGER", CLEAN),
            ("usage", "VARCHAR(60)", CLEAN),
        ],
    )
    for aid in range(1, 2 * n + 1):
        pid = m.r.randint(1, n)
        note = m.pick(
            [
                None,
                None,
                None,
                "按时到诊",
                "患者迟到15分钟",
                f"患者要求改约，回电{m.mobile()}",
                f"由{m.cn_name()}代为预约",
                "首次就诊",
            ]
        )
        appointment.rows.append(
            (
                aid,
                pid,
                m.r.randint(1, 10),
                m.r.randint(1, 8),
                m.moment(),
                m.pick(["done", "done", "cancelled", "no_show", "booked"]),
                m.pick(COMPLAINTS),
                note,
            )
        )
        if m.r.random() < 0.6:
            code, text = m.pick(DIAGNOSES)
            did = len(diagnosis.rows) + 1
            diagnosis.rows.append(
                (
                    did,
                    aid,
                    code,
                    f"{text}；{m.pick(['建议根管治疗', '已行充填', '建议拔除', '已洁治', '观察'])}",
                    str(m.pick([11, 16, 26, 36, 38, 46, 48])),
                )
            )
            for _ in range(m.r.randint(0, 2)):
                drug, spec = m.pick(DRUGS)
                prescription.rows.append(
                    (
                        len(prescription.rows) + 1,
                        did,
                        drug,
                        spec,
                        m.r.randint(1, 3),
                        m.pick(["口服，一日三次", "含漱，一日两次", "饭后服用"]),
                    )
                )

    invoice = Table(
        "invoice",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("patient_id", "INTEGER", CLEAN),
            ("invoice_no", "VARCHAR(24)", DECOY),
            ("title", "VARCHAR(80)", P("name", note="a person's name, or a company's")),
            ("tax_no", "VARCHAR(20)", DECOY),
            ("amount", "NUMERIC(10,2)", CLEAN),
            ("pay_method", "VARCHAR(10)", CLEAN),
            ("payer_card", "VARCHAR(19)", P("bank_card")),
            ("issued_at", "TIMESTAMP", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        company = m.r.random() < 0.25
        method = m.pick(["微信", "支付宝", "银联", "现金"])
        invoice.rows.append(
            (
                i,
                m.r.randint(1, n),
                "0440" + m.digits(16),
                m.pick(COMPANIES) if company else m.cn_name(),
                m.uscc() if company else None,
                round(m.r.random() * 5000 + 50, 2),
                method,
                m.bank_card() if method == "银联" else None,
                m.moment(),
            )
        )

    sms = Table(
        "sms_log",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("phone", "VARCHAR(20)", P("cn_mobile")),
            ("template_code", "VARCHAR(20)", DECOY),
            ("content", "VARCHAR(300)", P("name", note="'【微笑口腔】张伟您好' before the clinic's hotline")),
            ("sent_at", "TIMESTAMP", CLEAN),
            ("provider_msg_id", "VARCHAR(40)", DECOY),
        ],
    )
    for i in range(1, n + 1):
        sms.rows.append(
            (
                i,
                m.mobile(),
                "SMS_" + m.digits(9),
                f"【微笑口腔】{m.cn_name()}您好，您预约的{m.r.randint(1, 12)}月{m.r.randint(1, 28)}日复诊请准时到院，如需改约请致电{CLINIC_HOTLINE}。",
                m.moment(),
                m.digits(6) + "^" + m.digits(13),
            )
        )

    lab = Table(
        "lab_result",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("appointment_id", "INTEGER", CLEAN),
            (
                "payload",
                "JSONB",
                P("name", "cn_mobile", "health", note="the lab's JSON report with the patient block"),
            ),
            ("received_at", "TIMESTAMP", CLEAN),
        ],
    )
    for i in range(1, n // 2 + 1):
        payload = {
            "lab": "金域医学",
            "sample_no": m.order_no(14),
            "patient": {
                "name": m.cn_name(),
                "sex": m.pick(["男", "女"]),
                "age": m.r.randint(3, 80),
                "phone": m.mobile(),
            },
            "items": [
                {"code": "WBC", "value": round(m.r.uniform(3.5, 11), 1), "unit": "10^9/L"},
                {"code": "GLU", "value": round(m.r.uniform(3.9, 9.0), 1), "unit": "mmol/L"},
            ],
            "conclusion": m.pick(["未见异常", "血糖偏高", "白细胞升高，提示感染"]),
        }
        lab.rows.append((i, m.r.randint(1, 2 * n), json.dumps(payload, ensure_ascii=False), m.moment()))

    setting = Table(
        "clinic_setting",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("setting_key", "VARCHAR(40)", CLEAN),
            ("setting_value", "VARCHAR(200)", CLEAN),
            ("updated_by", "VARCHAR(40)", AMBIG("a staff login")),
        ],
    )
    values = [
        ("clinic_name", "微笑口腔门诊部"),
        ("hotline", CLINIC_HOTLINE),
        ("front_desk_phone", CLINIC_LANDLINE),
        ("complaint_phone", "800-830-1234"),
        ("bank_hotline", "95588"),
        ("service_email", "service@smiledental.cn"),
        ("hr_email", "hr@smiledental.cn"),
        ("noreply_email", "noreply@smiledental.cn"),
        ("address", "广东省深圳市南山区科技园南路88号微笑大厦3楼"),
        ("business_hours", "09:00-18:00"),
        ("icp", "粤ICP备12345678号"),
        ("sms_sign", "微笑口腔"),
        ("uscc", m.uscc()),
        ("booking_days", "14"),
    ]
    for i, (k, v) in enumerate(values, 1):
        setting.rows.append((i, k, v, "admin"))

    article = Table(
        "cms_article",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("title", "VARCHAR(120)", CLEAN),
            ("body", "TEXT", CLEAN),
            ("author", "VARCHAR(40)", CLEAN),
            ("published", "BOOLEAN", CLEAN),
            ("views", "INTEGER", CLEAN),
        ],
    )
    titles = [
        "关于我们",
        "儿童涂氟须知",
        "种植牙常见问题",
        "全瓷牙与烤瓷牙的区别",
        "夏季口腔护理",
        "高端正畸方案",
        "洗牙会伤牙吗",
        "周年庆优惠活动",
        "黄金周门诊安排",
        "常见问题解答",
    ]
    for i in range(1, 61):
        body = f"<p>{m.pick(titles)}。微笑口腔成立于2012年，位于深圳市南山区科技园南路88号。</p><p>预约热线：{CLINIC_HOTLINE}，前台电话：{CLINIC_LANDLINE}，邮箱 service@smiledental.cn。</p>"
        article.rows.append(
            (
                i,
                titles[i % len(titles)] + ("" if i <= 10 else f"（{i}）"),
                body,
                m.pick(["admin", "编辑部", "市场部"]),
                True,
                m.r.randint(0, 9000),
            )
        )

    drug = Table(
        "drug",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("name", "VARCHAR(40)", CLEAN),
            ("spec", "VARCHAR(40)", CLEAN),
            ("barcode", "VARCHAR(13)", DECOY),
            ("approval_no", "VARCHAR(20)", DECOY),
            ("price", "NUMERIC(8,2)", CLEAN),
        ],
    )
    for i, (name, spec) in enumerate(DRUGS * 5, 1):
        drug.rows.append((i, name, spec, m.ean13(), "国药准字H" + m.digits(8), round(m.r.uniform(5, 80), 2)))

    audit = Table(
        "audit_log",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("staff_id", "INTEGER", CLEAN),
            ("action", "VARCHAR(40)", CLEAN),
            ("ip", "VARCHAR(40)", P("ip_address", whose="staff")),
            ("at", "TIMESTAMP", CLEAN),
        ],
    )
    for i in range(1, 1501):
        audit.rows.append(
            (
                i,
                m.r.randint(1, 40),
                m.pick(["login", "view_patient", "edit_invoice", "export"]),
                m.ip(),
                m.moment(),
            )
        )

    referral = Table(
        "referral",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("patient_id", "INTEGER", CLEAN),
            ("referrer_name", "VARCHAR(40)", EMPTY("name")),
            ("referrer_phone", "VARCHAR(20)", EMPTY("phone")),
            ("hospital", "VARCHAR(80)", CLEAN),
        ],
    )
    for i in range(1, 201):
        referral.rows.append(
            (
                i,
                m.r.randint(1, n),
                None,
                None,
                m.pick(["深圳市人民医院", "北京大学深圳医院", "南方医科大学深圳医院"]),
            )
        )

    return [
        staff,
        patient,
        guardian,
        appointment,
        diagnosis,
        prescription,
        invoice,
        sms,
        lab,
        setting,
        article,
        drug,
        audit,
        referral,
    ]


# ---------------------------------------------------------------------------------------------
# school (MariaDB)

SCHOOL_HOTLINE = "400-660-1866"
COURSES = [
    "少儿编程启蒙",
    "Python入门",
    "雅思7分冲刺",
    "少儿美术",
    "围棋初级",
    "高考数学提分",
    "钢琴考级",
    "少儿英语KET",
]
SCHOOLS = ["深圳实验学校", "南山外国语学校", "北京四中", "杭州学军中学", "成都七中", "华中师大一附中"]


def school(n: int = 3000) -> list[Table]:
    m = Maker(SEED + 1)
    xs = Table(
        "xs_xueyuan",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("xuehao", "VARCHAR(20)", DECOY),
            ("xingming", "VARCHAR(20)", P("name")),
            ("xingbie", "VARCHAR(2)", P("gender")),
            ("chushengriqi", "DATE", P("birth_date")),
            ("sfzh", "VARCHAR(18)", P("cn_resident_id")),
            ("shouji", "VARCHAR(11)", P("cn_mobile")),
            ("jzxm", "VARCHAR(20)", P("name", note="parent's name")),
            ("jiazhang_shouji", "VARCHAR(11)", P("cn_mobile")),
            ("dizhi", "VARCHAR(200)", P("address")),
            ("xuexiao", "VARCHAR(40)", P("employment", note="the pupil's school")),
            ("nianji", "VARCHAR(10)", AMBIG("grade")),
            ("weixin", "VARCHAR(40)", P("im_account")),
            ("qq", "VARCHAR(12)", P("im_account")),
            ("beizhu", "VARCHAR(255)", P("name", "cn_mobile", note="remarks with a name and a phone")),
            ("zhuangtai", "TINYINT", CLEAN),
            ("createTime", "DATETIME", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        d = m.pick(DISTRICTS)
        born = m.birth(2005, 2020)
        note = m.pick(
            [
                None,
                None,
                "",
                "试听后报名",
                f"{m.cn_name()}推荐",
                f"妈妈电话{m.mobile()}",
                "需要发票",
                f"{m.cn_name()}家长，晚上联系",
                "老学员续费",
            ]
        )
        xs.rows.append(
            (
                i,
                f"XY{2020 + i % 7}{i:06d}",
                m.cn_name(),
                m.pick(["男", "女"]),
                born,
                m.maybe(0.7, m.resident_id(born, d)),
                m.maybe(0.3, m.mobile()),
                m.cn_name(),
                m.mobile(),
                m.maybe(0.7, m.address(d)),
                m.pick(SCHOOLS),
                m.pick(["一年级", "三年级", "五年级", "初二", "高一"]),
                m.maybe(0.5, m.wechat_id()),
                m.maybe(0.4, m.qq()),
                note,
                m.r.randint(0, 2),
                m.moment(),
            )
        )

    member = Table(
        "app_member",
        [
            ("id", "BIGINT PRIMARY KEY", CLEAN),
            ("openId", "VARCHAR(40)", P("im_account")),
            ("unionId", "VARCHAR(40)", P("im_account")),
            ("nickName", "VARCHAR(40)", P("name")),
            ("avatarUrl", "VARCHAR(200)", AMBIG("avatar URL")),
            ("realName", "VARCHAR(20)", P("name")),
            ("mobilePhone", "VARCHAR(11)", P("cn_mobile")),
            ("idCardNo", "VARCHAR(18)", P("cn_resident_id")),
            ("birthDay", "DATE", P("birth_date")),
            ("gender", "TINYINT", P("gender")),
            ("regIp", "VARCHAR(40)", P("ip_address")),
            ("inviteCode", "VARCHAR(8)", DECOY),
            ("points", "INT", CLEAN),
            ("lastLoginTime", "DATETIME", CLEAN),
        ],
    )
    nicks = [
        "小鱼儿",
        "快乐每一天",
        "Sunny",
        "阳光男孩",
        "追梦人",
        "Lily",
        "A安安",
        "木子李",
        "静待花开",
        "大白",
        "momo",
        "晴天",
    ]
    for i in range(1, n + 1):
        real = m.cn_name()
        born = m.birth(1970, 2015)
        member.rows.append(
            (
                i,
                m.openid(),
                m.maybe(0.6, m.openid()),
                real if m.r.random() < 0.3 else m.pick(nicks),
                f"https://thirdwx.qlogo.cn/mmopen/vi_32/{m.digits(20)}/132",
                m.maybe(0.6, real),
                m.maybe(0.8, m.mobile()),
                m.maybe(0.4, m.resident_id(born)),
                m.maybe(0.5, born),
                m.pick([0, 1, 2]),
                m.ip(),
                "".join(m.pick("ABCDEFGHJKMNPQRSTUVWXYZ23456789") for _ in range(6)),
                m.r.randint(0, 5000),
                m.moment(),
            )
        )

    kc = Table(
        "kc_kecheng",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("kcmc", "VARCHAR(40)", CLEAN),
            ("jiage", "DECIMAL(10,2)", CLEAN),
            ("jianjie", "VARCHAR(500)", CLEAN),
            ("kcbh", "VARCHAR(20)", DECOY),
        ],
    )
    for i in range(1, 41):
        kc.rows.append(
            (
                i,
                COURSES[i % len(COURSES)] + f"{i}期",
                m.r.randint(8, 60) * 100,
                f"{COURSES[i % len(COURSES)]}，小班授课，名师指导。报名咨询：{SCHOOL_HOTLINE}，校区电话0755-26881234。",
                "2026" + m.digits(7),
            )
        )

    bm = Table(
        "bm_baoming",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("xyid", "INT", CLEAN),
            ("kcid", "INT", CLEAN),
            ("jine", "DECIMAL(10,2)", CLEAN),
            ("fapiao_taitou", "VARCHAR(80)", P("name", note="a parent's name or a company's")),
            ("shuihao", "VARCHAR(20)", DECOY),
            ("zhifu_liushui", "VARCHAR(32)", DECOY),
            ("fukuanren", "VARCHAR(20)", P("name", note="payer")),
            ("zfsj", "DATETIME", CLEAN),
        ],
    )
    for i in range(1, 2 * n + 1):
        company = m.r.random() < 0.2
        bm.rows.append(
            (
                i,
                m.r.randint(1, n),
                m.r.randint(1, 40),
                m.r.randint(8, 60) * 100,
                m.maybe(0.6, m.pick(COMPANIES) if company else m.cn_name()),
                m.uscc() if company else None,
                "42000" + m.digits(23),
                m.cn_name(),
                m.moment(),
            )
        )

    zy = Table(
        "zy_shangchuan",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("xyid", "INT", CLEAN),
            ("wjm", "VARCHAR(200)", P("name", "cn_mobile", note="uploaded file names")),
            ("lujing", "VARCHAR(255)", CLEAN),
            ("daxiao", "INT", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        name = m.cn_name()
        fname = m.pick(
            [
                f"{name}_{m.mobile()}_作业.docx",
                f"报名表-{name}.pdf",
                f"{name}的成绩单.jpg",
                f"IMG_{m.digits(4)}.jpg",
                f"{name}-期末作品.png",
                f"微信图片_{m.order_no(17)}.jpg",
            ]
        )
        zy.rows.append(
            (
                i,
                m.r.randint(1, n),
                fname,
                f"/upload/2026/{m.r.randint(1, 12):02d}/{m.digits(16)}.dat",
                m.r.randint(1000, 9000000),
            )
        )

    notify = Table(
        "pay_notify",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("out_trade_no", "VARCHAR(32)", DECOY),
            ("raw_xml", "TEXT", P("im_account", note="WeChat Pay notification with the payer's openid")),
            ("created", "DATETIME", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        trade = m.order_no(20)
        xml = (
            f"<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid><mch_id><![CDATA[10000100]]></mch_id>"
            f"<openid><![CDATA[{m.openid()}]]></openid><out_trade_no><![CDATA[{trade}]]></out_trade_no>"
            f"<total_fee>{m.r.randint(100, 900000)}</total_fee><transaction_id><![CDATA[42000{m.digits(23)}]]></transaction_id></xml>"
        )
        notify.rows.append((i, trade, xml, m.moment()))

    cfg = Table(
        "sys_config",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("cfg_key", "VARCHAR(40)", CLEAN),
            ("cfg_value", "VARCHAR(255)", CLEAN),
            ("remark", "VARCHAR(100)", CLEAN),
        ],
    )
    cfgs = [
        ("site_name", "智学教育", "站点名称"),
        ("kefu_phone", SCHOOL_HOTLINE, "客服电话"),
        ("kefu_email", "kefu@zhixue.edu.cn", "客服邮箱"),
        ("admin_email", "admin@zhixue.edu.cn", "管理员邮箱"),
        ("campus_tel", "0755-26881234", "校区电话"),
        ("complaint_tel", "12315", "投诉"),
        ("wx_appid", "wx2421b1c4370ec43b", "公众号"),
        ("mch_id", "10000100", "商户号"),
        ("copyright", "© 2026 智学教育 粤ICP备20261234号", "版权"),
        ("sms_sign", "智学教育", "短信签名"),
    ]
    for i, row in enumerate(cfgs, 1):
        cfg.rows.append((i, *row))

    admin = Table(
        "sys_yonghu",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("yonghuming", "VARCHAR(40)", P("account", whose="staff")),
            ("mima", "VARCHAR(80)", P("credential", whose="staff")),
            ("xm", "VARCHAR(20)", P("name", whose="staff")),
            ("sjh", "VARCHAR(11)", P("cn_mobile", whose="staff")),
            ("jiaose", "VARCHAR(20)", CLEAN),
        ],
    )
    for i in range(1, 31):
        admin.rows.append(
            (
                i,
                f"{m.pick(['zhang', 'li', 'wang', 'chen', 'liu'])}{m.pick(['wei', 'fang', 'na', 'jie'])}{i}",
                m.bcrypt(),
                m.cn_name(),
                m.mobile(),
                m.pick(["校长", "教务", "老师", "财务"]),
            )
        )

    log = Table(
        "sys_rizhi",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("caozuoren", "VARCHAR(20)", P("name", whose="staff", note="the operator's name")),
            ("ip", "VARCHAR(40)", P("ip_address", whose="staff")),
            ("neirong", "VARCHAR(200)", AMBIG("what was done, sometimes to whom")),
            ("shijian", "DATETIME", CLEAN),
        ],
    )
    ops = [r[3] for r in admin.rows]
    for i in range(1, 2001):
        log.rows.append(
            (
                i,
                m.pick(ops),
                m.ip(),
                m.pick(["登录系统", "修改课程价格", "导出学员名单", "审核退款", "发布公告"]),
                m.moment(),
            )
        )

    news = Table(
        "cms_xinwen",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("biaoti", "VARCHAR(100)", CLEAN),
            ("neirong", "TEXT", CLEAN),
            ("zuozhe", "VARCHAR(20)", CLEAN),
        ],
    )
    heads = [
        "关于我们",
        "全站公告",
        "简介",
        "高分学员风采",
        "黄金周放假通知",
        "钱学森班招生简章",
        "常见问题",
        "联系我们",
    ]
    for i, h in enumerate(heads, 1):
        news.rows.append(
            (
                i,
                h,
                f"<p>{h}：智学教育创办于2010年。咨询热线{SCHOOL_HOTLINE}，邮箱kefu@zhixue.edu.cn。</p>",
                "管理员",
            )
        )

    empty = Table(
        "hd_huodong_baoming",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("lxr", "VARCHAR(20)", EMPTY("name")),
            ("lxdh", "VARCHAR(20)", EMPTY("phone")),
            ("sfzh", "VARCHAR(18)", EMPTY("cn_resident_id")),
            ("dizhi", "VARCHAR(200)", EMPTY("address")),
        ],
    )

    teacher = Table(
        "js_jiaoshi",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("xingming", "VARCHAR(20)", P("name", whose="staff")),
            ("shouji", "VARCHAR(11)", P("cn_mobile", whose="staff")),
            ("yinhangka", "VARCHAR(19)", P("bank_card", whose="staff", note="salary card")),
            ("zhicheng", "VARCHAR(20)", AMBIG("job title")),
            ("jianjie", "VARCHAR(300)", AMBIG("public teacher biography")),
        ],
    )
    for i in range(1, 61):
        teacher.rows.append(
            (
                i,
                m.cn_name(),
                m.mobile(),
                m.bank_card(),
                m.pick(["讲师", "高级讲师", "助教"]),
                f"毕业于{m.pick(['北京师范大学', '华东师范大学', '武汉大学'])}，{m.r.randint(3, 15)}年教学经验。",
            )
        )

    return [xs, member, kc, bm, zy, notify, cfg, admin, log, news, empty, teacher]


# ---------------------------------------------------------------------------------------------
# crm (PostgreSQL)


def crm(n: int = 2500) -> list[Table]:
    m = Maker(SEED + 2)
    account = Table(
        "accounts",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("company_name", "VARCHAR(80)", CLEAN),
            ("industry", "VARCHAR(40)", CLEAN),
            ("website", "VARCHAR(80)", CLEAN),
            ("main_phone", "VARCHAR(30)", CLEAN),
            ("billing_street", "VARCHAR(120)", CLEAN),
            ("billing_city", "VARCHAR(40)", CLEAN),
            ("billing_zip", "VARCHAR(10)", CLEAN),
            ("annual_revenue", "BIGINT", CLEAN),
        ],
    )
    for i in range(1, 301):
        city, _ = m.pick(CITIES_EN)
        account.rows.append(
            (
                i,
                f"{m.pick(COMPANIES_EN).split()[0]} {m.pick(['Systems', 'Group', 'Labs', 'Holdings', 'Works'])} {i}",
                m.pick(INDUSTRIES),
                f"https://www.example{i}.com",
                m.pick(
                    [
                        f"+1-800-{m.digits(3)}-{m.digits(4)}",
                        f"+1-{m.r.randint(201, 989)}-{m.digits(3)}-{m.digits(4)}",
                    ]
                ),
                m.street_en(),
                city,
                m.digits(5),
                m.r.randint(10, 5000) * 100000,
            )
        )
    contact = Table(
        "contacts",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("account_id", "INTEGER", CLEAN),
            ("first_name", "VARCHAR(40)", P("name")),
            ("last_name", "VARCHAR(40)", P("name")),
            ("job_title", "VARCHAR(60)", P("employment")),
            ("email", "VARCHAR(80)", P("email")),
            ("mobile_phone", "VARCHAR(30)", P("phone")),
            ("mailing_street", "VARCHAR(120)", P("address")),
            ("mailing_city", "VARCHAR(40)", P("address")),
            ("mailing_zip", "VARCHAR(10)", P("address")),
            (
                "custom_fields",
                "JSONB",
                P("im_account", "birth_date", note="{'wechat': ..., 'birthday': ...}"),
            ),
            ("owner_id", "INTEGER", CLEAN),
            ("created_at", "TIMESTAMPTZ", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        first, last = m.latin()
        city, state = m.pick(CITIES_EN)
        custom = {"segment": m.pick(["SMB", "Enterprise"]), "newsletter": m.r.random() < 0.5}
        if m.r.random() < 0.5:
            custom["wechat"] = m.wechat_id()
        if m.r.random() < 0.4:
            custom["birthday"] = m.birth(1960, 2000).isoformat()
        contact.rows.append(
            (
                i,
                m.r.randint(1, 300),
                first,
                last,
                m.pick(["CEO", "CTO", "Head of Procurement", "Office Manager", "Sales Director", "Engineer"]),
                f"{first.lower()}.{last.lower().replace(chr(39), '')}@example{m.r.randint(1, 300)}.com",
                m.pick([f"+1 ({m.digits(3)}) {m.digits(3)}-{m.digits(4)}", f"+86 {m.mobile()}"]),
                m.street_en(),
                city,
                m.digits(5),
                json.dumps(custom),
                m.r.randint(1, 25),
                m.moment(),
            )
        )
    lead = Table(
        "leads",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("full_name", "VARCHAR(80)", P("name")),
            ("company", "VARCHAR(80)", AMBIG("a lead's employer")),
            ("email", "VARCHAR(80)", P("email")),
            ("phone", "VARCHAR(30)", P("phone")),
            ("street", "VARCHAR(120)", P("address")),
            ("city", "VARCHAR(40)", P("address")),
            ("state", "VARCHAR(4)", P("address")),
            ("zip_code", "VARCHAR(10)", P("address")),
            ("source", "VARCHAR(20)", CLEAN),
            ("status", "VARCHAR(20)", CLEAN),
            ("notes", "TEXT", P("phone", "email", note="call notes with numbers and addresses")),
        ],
    )
    for i in range(1, n + 1):
        first, last = m.latin()
        city, state = m.pick(CITIES_EN)
        notes = m.pick(
            [
                None,
                "",
                "Met at expo",
                f"Call back at {m.mobile()} after 5pm",
                f"Prefers email: {m.email()}",
                "Budget approved Q3",
                "Not interested",
            ]
        )
        lead.rows.append(
            (
                i,
                f"{first} {last}",
                m.pick(COMPANIES_EN),
                m.email(f"{first.lower()}{m.digits(2)}"),
                f"+1-{m.digits(3)}-{m.digits(3)}-{m.digits(4)}",
                m.street_en(),
                city,
                state,
                m.digits(5),
                m.pick(["web", "expo", "referral", "ads"]),
                m.pick(["new", "qualified", "lost"]),
                notes,
            )
        )
    user = Table(
        "users",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("email", "VARCHAR(80)", P("email", whose="staff")),
            ("display_name", "VARCHAR(60)", P("name", whose="staff")),
            ("password_digest", "VARCHAR(80)", P("credential", whose="staff")),
            ("last_sign_in_ip", "INET", P("ip_address", whose="staff")),
            ("preferences", "JSONB", CLEAN),
            ("role", "VARCHAR(20)", CLEAN),
        ],
    )
    for i in range(1, 26):
        first, last = m.latin()
        user.rows.append(
            (
                i,
                f"{first.lower()}@ourcrm.io",
                f"{first} {last}",
                m.bcrypt(),
                m.ip(),
                json.dumps(
                    {"theme": m.pick(["dark", "light"]), "locale": m.pick(["en", "zh-CN"]), "page_size": 50}
                ),
                m.pick(["admin", "sales"]),
            )
        )
    event = Table(
        "events",
        [
            ("id", "BIGINT PRIMARY KEY", CLEAN),
            ("user_id", "INTEGER", CLEAN),
            ("name", "VARCHAR(40)", CLEAN),
            ("properties", "JSONB", P("ip_address", note="{'path':..., 'ip': ...}")),
            ("occurred_at", "TIMESTAMPTZ", CLEAN),
        ],
    )
    for i in range(1, 3 * n + 1):
        event.rows.append(
            (
                i,
                m.r.randint(1, 25),
                m.pick(["page_view", "contact_created", "email_sent"]),
                json.dumps(
                    {"path": m.pick(["/contacts", "/leads", "/reports"]), "ip": m.ip(), "ua": "Mozilla/5.0"}
                ),
                m.moment(),
            )
        )
    hook = Table(
        "webhook_deliveries",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("source", "VARCHAR(20)", CLEAN),
            ("payload", "JSONB", P("im_account", "name", note="mini-program login callbacks")),
            ("status_code", "INTEGER", CLEAN),
        ],
    )
    for i in range(1, n // 2 + 1):
        hook.rows.append(
            (
                i,
                "wechat",
                json.dumps(
                    {
                        "openid": m.openid(),
                        "nickName": m.pick(["Sunny", m.cn_name(), "小鱼"]),
                        "avatarUrl": "https://thirdwx.qlogo.cn/x/132",
                        "city": "Shenzhen",
                    },
                    ensure_ascii=False,
                ),
                m.pick([200, 200, 500]),
            )
        )
    plan = Table(
        "plans",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("code", "VARCHAR(20)", CLEAN),
            ("name", "VARCHAR(40)", CLEAN),
            ("monthly_price", "NUMERIC(8,2)", CLEAN),
            ("sales_phone", "VARCHAR(30)", CLEAN),
        ],
    )
    for i, (code, name) in enumerate(
        [("free", "Free"), ("team", "Team"), ("biz", "Business"), ("ent", "Enterprise")], 1
    ):
        plan.rows.append((i, code, name, i * 29.0, "+1-800-555-0199"))
    ticket = Table(
        "support_tickets",
        [
            ("id", "INTEGER PRIMARY KEY", CLEAN),
            ("contact_id", "INTEGER", CLEAN),
            ("subject", "VARCHAR(120)", CLEAN),
            ("body", "TEXT", P("email", "cn_mobile", note="customer messages with their numbers")),
            ("priority", "VARCHAR(10)", CLEAN),
        ],
    )
    for i in range(1, n // 2 + 1):
        body = m.pick(
            [
                "Export fails with a timeout.",
                f"Please call me on {m.mobile()}.",
                f"Send the invoice to {m.email()} please",
                "Cannot log in since yesterday",
                "How do I merge duplicates?",
            ]
        )
        ticket.rows.append(
            (
                i,
                m.r.randint(1, n),
                m.pick(["Export issue", "Login", "Billing", "Question"]),
                body,
                m.pick(["low", "high"]),
            )
        )
    return [account, contact, lead, user, event, hook, plan, ticket]


# ---------------------------------------------------------------------------------------------
# hr (MariaDB): written after the rules above, scored once before any change (a held-out case)

DEPARTMENTS = ["研发部", "市场部", "财务部", "人事部", "客服部", "行政部"]
BANKS = ["招商银行深圳分行", "中国工商银行南山支行", "建设银行科技园支行"]
PLATES = "京沪粤浙川鄂苏陕鲁"


def hr(n: int = 1500) -> list[Table]:
    m = Maker(SEED + 3)
    emp = Table(
        "员工",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("工号", "VARCHAR(10)", DECOY),
            ("姓名", "VARCHAR(20)", P("name", whose="staff")),
            ("性别", "VARCHAR(2)", P("gender", whose="staff")),
            ("出生日期", "DATE", P("birth_date", whose="staff")),
            ("身份证号", "VARCHAR(18)", P("cn_resident_id", whose="staff")),
            ("手机号", "VARCHAR(11)", P("cn_mobile", whose="staff")),
            ("民族", "VARCHAR(10)", AMBIG("ethnic group")),
            ("籍贯", "VARCHAR(20)", AMBIG("native place")),
            ("部门", "VARCHAR(20)", CLEAN),
            ("职位", "VARCHAR(20)", P("employment", whose="staff")),
            ("入职日期", "DATE", AMBIG("hire date")),
            ("银行卡号", "VARCHAR(19)", P("bank_card", whose="staff")),
            ("开户行", "VARCHAR(40)", CLEAN),
            ("紧急联系人", "VARCHAR(20)", P("name", whose="staff")),
            ("紧急联系电话", "VARCHAR(11)", P("cn_mobile", whose="staff")),
            ("家庭住址", "VARCHAR(200)", P("address", whose="staff")),
            ("邮箱", "VARCHAR(80)", P("email", whose="staff")),
            (
                "备注",
                "VARCHAR(255)",
                P("health", "name", whose="staff", note="remarks: sick leave, a referee"),
            ),
        ],
    )
    for i in range(1, n + 1):
        d = m.pick(DISTRICTS)
        born = m.birth(1965, 2004)
        note = m.pick(
            [
                None,
                None,
                "",
                "试用期",
                f"{m.cn_name()}推荐入职",
                "有高血压，避免夜班",
                "2025年度优秀员工",
                "孕期，产检请假",
            ]
        )
        emp.rows.append(
            (
                i,
                f"E{i:05d}",
                m.cn_name(),
                m.pick(["男", "女"]),
                born,
                m.resident_id(born, d),
                m.mobile(),
                m.pick(["汉族", "汉族", "汉族", "回族", "壮族", "满族"]),
                m.pick(["湖南长沙", "四川成都", "广东梅州", "河南信阳"]),
                m.pick(DEPARTMENTS),
                m.pick(["工程师", "高级工程师", "专员", "经理", "主管"]),
                m.moment(2015).date(),
                m.bank_card(),
                m.pick(BANKS),
                m.cn_name(),
                m.mobile(),
                m.address(d),
                m.maybe(0.7, m.email()),
                note,
            )
        )
    pay = Table(
        "工资条",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("工号", "VARCHAR(10)", CLEAN),
            ("月份", "VARCHAR(7)", CLEAN),
            ("基本工资", "DECIMAL(10,2)", AMBIG("a salary: personal with the employee number")),
            ("个税", "DECIMAL(10,2)", AMBIG("income tax")),
            ("实发", "DECIMAL(10,2)", AMBIG("net pay")),
        ],
    )
    for i in range(1, 2 * n + 1):
        base = m.r.randint(50, 400) * 100
        pay.rows.append(
            (
                i,
                f"E{m.r.randint(1, n):05d}",
                f"2026-{m.r.randint(1, 11):02d}",
                base,
                round(base * 0.05, 2),
                round(base * 0.83, 2),
            )
        )
    leave = Table(
        "请假申请",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("申请人", "VARCHAR(20)", P("name", whose="staff")),
            ("事由", "VARCHAR(200)", P("health", whose="staff", note="sick leave reasons")),
            ("开始", "DATE", CLEAN),
            ("天数", "INT", CLEAN),
            ("审批人", "VARCHAR(20)", P("name", whose="staff")),
            ("审批意见", "VARCHAR(200)", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        leave.rows.append(
            (
                i,
                m.cn_name(),
                m.pick(
                    [
                        "发烧，请病假",
                        "家中有事",
                        "孩子住院陪护",
                        "年假旅游",
                        "感冒就医",
                        "婚假",
                        "腰椎间盘突出复查",
                    ]
                ),
                m.moment().date(),
                m.r.randint(1, 5),
                m.cn_name(),
                m.pick(["同意", "同意，注意休息", "请补充病假条", "不同意"]),
            )
        )
    dept = Table(
        "部门",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("名称", "VARCHAR(20)", CLEAN),
            ("负责人", "VARCHAR(20)", P("name", whose="staff")),
            ("电话", "VARCHAR(20)", CLEAN),
        ],
    )
    for i, name in enumerate(DEPARTMENTS, 1):
        dept.rows.append((i, name, m.cn_name(), f"0755-8632{i:04d}"))
    company = Table(
        "公司信息",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("公司名称", "VARCHAR(60)", CLEAN),
            ("统一社会信用代码", "VARCHAR(18)", DECOY),
            ("注册地址", "VARCHAR(200)", CLEAN),
            (
                "法定代表人",
                "VARCHAR(20)",
                AMBIG("the legal representative: a person, on the public register"),
            ),
            ("联系电话", "VARCHAR(20)", CLEAN),
        ],
    )
    company.rows.append(
        (
            1,
            "深圳市某某信息技术有限公司",
            m.uscc(),
            "广东省深圳市南山区科技园南路88号某某大厦12楼",
            m.cn_name(),
            "0755-86320000",
        )
    )
    resume = Table(
        "招聘简历",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("姓名", "VARCHAR(20)", P("name")),
            ("手机", "VARCHAR(11)", P("cn_mobile")),
            ("邮箱", "VARCHAR(80)", P("email")),
            ("毕业院校", "VARCHAR(40)", P("employment", note="the applicant's university")),
            ("简历文件", "VARCHAR(200)", P("name", note="file names")),
            ("期望薪资", "VARCHAR(20)", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        name = m.cn_name()
        resume.rows.append(
            (
                i,
                name,
                m.mobile(),
                m.email(),
                m.pick(["深圳大学", "华南理工大学", "武汉大学", "电子科技大学"]),
                f"/resume/{name}_简历_{m.pick(['Java', '产品', '会计'])}.pdf",
                f"{m.r.randint(8, 30)}K",
            )
        )
    car = Table(
        "车辆登记",
        [
            ("id", "INT PRIMARY KEY", CLEAN),
            ("车牌号", "VARCHAR(10)", P("vehicle", whose="staff", note="a licence plate")),
            ("车主", "VARCHAR(20)", P("name", whose="staff")),
            ("手机", "VARCHAR(11)", P("cn_mobile", whose="staff")),
            ("车位", "VARCHAR(10)", CLEAN),
        ],
    )
    for i in range(1, 301):
        car.rows.append((i, m.plate(), m.cn_name(), m.mobile(), f"B2-{i:03d}"))
    return [emp, pay, leave, dept, company, resume, car]


DATABASES = {
    "clinic": ("postgresql", clinic),
    "school": ("mariadb", school),
    "crm": ("postgresql", crm),
    "hr": ("mariadb", hr),
}


def truth(db: str, databases: dict | None = None, seed: int = SEED) -> dict:
    """The ground truth of one database of `databases` (this module's by default), in the
    realworld packs' format."""
    dbms, build = (databases or DATABASES)[db]
    return describe(f"unseen-{db}", dbms, seed, build())


def describe(case: str, dbms: str, seed: int, tables: list[Table]) -> dict:
    """The ground truth of `tables` (their labels), in the realworld packs' format."""
    out: dict = {
        "case": case,
        "dbms": dbms,
        "seed": seed,
        "truth": {},
        "ambiguous": {},
        "clean": {},
        "decoys": {},
        "rows": {},
    }
    for table in tables:
        out["rows"][table.name] = len(table.rows)
        for column, _type, label in table.columns:
            if label.kind in ("personal", "empty"):
                facts: dict = {
                    "categories": list(label.categories),
                    "level": "sensitive" if SENSITIVE & set(label.categories) else "general",
                    "whose": label.whose,
                }
                if label.kind == "empty":
                    facts["empty"] = True
                if label.note:
                    facts["note"] = label.note
                out["truth"].setdefault(table.name, {})[column] = facts
            elif label.kind == "ambiguous":
                out["ambiguous"].setdefault(table.name, []).append(column)
            else:
                out["clean"].setdefault(table.name, []).append(column)
                if label.decoy:
                    out["decoys"].setdefault(table.name, []).append(column)
    return out


def load(db: str, url: str, databases: dict | None = None) -> None:
    """Create the tables of `db` (of `databases`, this module's by default) in the (empty) database
    at `url` and insert the rows."""
    dbms, build = (databases or DATABASES)[db]
    load_tables(dbms, url, build())


def load_tables(dbms: str, url: str, tables: list[Table]) -> None:
    """Create `tables` in the (empty) database at `url` (PostgreSQL, MariaDB or SQLite) and insert
    their rows."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    q = "`" if dbms == "mariadb" else '"'
    mark = "?" if dbms == "sqlite" else "%s"
    try:
        with engine.begin() as conn:
            for table in tables:
                cols = ", ".join(f"{q}{c}{q} {t}" for c, t, _ in table.columns)
                tail = " DEFAULT CHARSET=utf8mb4" if dbms == "mariadb" else ""
                conn.exec_driver_sql(f"CREATE TABLE {q}{table.name}{q} ({cols}){tail}")
                if table.rows:
                    marks = ", ".join([mark] * len(table.columns))
                    names = ", ".join(f"{q}{c}{q}" for c, _, _ in table.columns)
                    conn.exec_driver_sql(
                        f"INSERT INTO {q}{table.name}{q} ({names}) VALUES ({marks})", table.rows
                    )
    finally:
        engine.dispose()


def main(databases: dict | None = None, seed: int = SEED, doc: str | None = None) -> None:
    """Write each database's truth file (of `databases`, this module's by default)."""
    parser = argparse.ArgumentParser(description=(doc or __doc__).split("\n\n")[0])
    parser.add_argument(
        "--truth", type=Path, default=Path(__file__).resolve().parent, help="folder for DB.truth.json"
    )
    args = parser.parse_args()
    for db in databases or DATABASES:
        (args.truth / f"{db}.truth.json").write_text(
            json.dumps(truth(db, databases, seed), ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
