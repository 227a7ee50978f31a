"""Three more databases Dereg's rules were not written against (issue 16, second round), written
before reading the rules and scanned once before any change.

    python -m tests.integration.unseen.round2 [--truth DIR]

- `kindergarten` (PostgreSQL): a kindergarten with a children's sports club. Every column carries a
  one-letter table prefix (c_name, g_mobile, h_allergy...): children under 14 with birth dates and
  resident IDs, guardians with their employer, pick-up persons with their relation, health checks
  (height, weight, temperature, allergies, medical notes), photos as file paths and face templates
  as bytea, fees paid by bank card, teachers' daily notes naming children, the school's own
  notices, settings and a menu.
- `courier` (MariaDB): a courier company. Waybills with sender and receiver split into
  province/city/district/detail, receivers' mobiles masked (138****1234), ID checks of senders,
  couriers, depots with the company's own phones, tracking events naming couriers and signers, an
  app's users and address book, complaints, a region dictionary.
- `gym` (SQLite): a gym with UPPER_CASE abbreviated column names (CUST_NM, MOB_NO, ID_NO,
  BIRTH_DT as YYYYMMDD text, GNDR_CD), membership cards (Luhn-invalid 19-digit numbers: decoys)
  bound to bank cards, fingerprint and face enrolment, body measurements, a JSON column of
  preferences with a WeChat openid, an audit log whose messages name customers, dictionary and
  parameter tables, products and orders.

Labels follow generate.py's (`P(...)`, `CLEAN`, `DECOY`, `AMBIG`, `EMPTY`), written beside each
column before any scan.
"""

from __future__ import annotations

import datetime as dt
import json
import string

from tests.integration.unseen import generate
from tests.integration.unseen.generate import (
    AMBIG,
    CLEAN,
    DECOY,
    DISTRICTS,
    EMPTY,
    ESTATES,
    LATIN_FIRST,
    LATIN_LAST,
    ROADS,
    Maker,
    P,
    Table,
)

SEED = 2611


def luhn_digit(body: str) -> str:
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return str((10 - total % 10) % 10)


def masked(mobile: str) -> str:
    return mobile[:3] + "****" + mobile[7:]


def trade_no(m: Maker) -> str:
    return "4200" + "00" + m.digits(22)


# ---------------------------------------------------------------------------------------------
# kindergarten (PostgreSQL)

KG_PHONE = "0571-88236610"
KG_HOTLINE = "400-686-5120"
RELATIONS = ["父亲", "母亲", "爷爷", "奶奶", "外公", "外婆", "姑姑", "舅舅", "保姆"]
CLASSES = ["小一班", "小二班", "中一班", "中二班", "大一班", "大二班", "篮球启蒙班", "轮滑提高班", "游泳班"]
KG_ALLERGY = ["无", "无", "无", "无", "花生过敏", "牛奶蛋白过敏", "芒果过敏", "鸡蛋过敏", "尘螨过敏"]
KG_MEDICAL = [
    "",
    "",
    "",
    "先天性心脏病术后，避免剧烈运动",
    "热性惊厥史",
    "哮喘，随身携带喷雾",
    "蚕豆病(G6PD缺乏)",
    "近视300度",
    "湿疹，外用药膏",
]
JOBS = ["教师", "医生", "工程师", "个体经营", "公务员", "会计", "销售经理", "程序员", "自由职业"]
EMPLOYERS = [
    "杭州市西湖区人民医院",
    "浙江大学",
    "阿里巴巴(中国)有限公司",
    "杭州市公安局西湖分局",
    "网易(杭州)网络有限公司",
    "杭州银行",
    "西湖区实验小学",
]
DISHES = ["番茄炒蛋", "清蒸鲈鱼", "南瓜小米粥", "胡萝卜炖牛腩", "紫菜蛋花汤", "香菇青菜", "玉米排骨汤"]
REPORT_LINES = [
    "{n}今天午睡很好，吃饭也比较主动。",
    "{n}在户外活动时摔了一跤，膝盖擦伤已消毒，请家长留意。",
    "今天{n}主动帮助同学整理玩具，老师表扬了他。",
    "{n}下午体温37.6℃，已电话通知家长接回。",
    "{n}今天情绪不太好，早上哭了一会儿，后来和小朋友玩得很开心。",
    "{n}同学篮球运球进步明显。",
]


def kindergarten(n: int = 900) -> list[Table]:
    m = Maker(SEED)
    hz = DISTRICTS[4]

    cls = Table(
        "class_group",
        [
            ("cg_id", "INTEGER PRIMARY KEY", CLEAN),
            ("cg_name", "VARCHAR(20)", CLEAN),
            ("cg_room", "VARCHAR(20)", CLEAN),
            ("cg_teacher_id", "INTEGER", CLEAN),
            ("cg_capacity", "INTEGER", CLEAN),
        ],
        key="cg_id",
    )
    for i, name in enumerate(CLASSES, 1):
        cls.rows.append((i, name, f"{m.pick('ABC')}{100 + i}", i, m.pick([25, 30, 35])))

    teacher = Table(
        "teacher",
        [
            ("t_id", "INTEGER PRIMARY KEY", CLEAN),
            ("t_name", "VARCHAR(20)", P("name", whose="staff")),
            ("t_mobile", "VARCHAR(20)", P("cn_mobile", whose="staff")),
            ("t_idcard", "VARCHAR(18)", P("cn_resident_id", whose="staff")),
            ("t_cert_no", "VARCHAR(30)", AMBIG("teacher's qualification certificate number")),
            ("t_role", "VARCHAR(20)", CLEAN),
            ("t_login", "VARCHAR(30)", P("account", whose="staff")),
            ("t_pwd", "VARCHAR(80)", P("credential", whose="staff")),
        ],
        key="t_id",
    )
    for i in range(1, 31):
        teacher.rows.append(
            (
                i,
                m.cn_name(),
                m.mobile(),
                m.resident_id(m.birth(1970, 1999), hz),
                f"2019330{m.digits(10)}",
                m.pick(["主班老师", "配班老师", "保育员", "教练", "园长"]),
                f"t{i:03d}",
                m.bcrypt(),
            )
        )

    child = Table(
        "child",
        [
            ("c_id", "INTEGER PRIMARY KEY", CLEAN),
            ("c_student_no", "VARCHAR(12)", DECOY),
            ("c_name", "VARCHAR(20)", P("name")),
            ("c_en_name", "VARCHAR(30)", P("name", note="Lucas, Chloe: an English first name")),
            ("c_nickname", "VARCHAR(10)", P("name", note="朵朵, 乐乐: a pet name")),
            ("c_gender", "SMALLINT", P("gender", note="1/2")),
            ("c_birthday", "DATE", P("birth_date")),
            ("c_idcard", "VARCHAR(18)", P("cn_resident_id")),
            ("c_class_id", "INTEGER", CLEAN),
            ("c_blood_type", "VARCHAR(4)", P("health")),
            ("c_home_address", "VARCHAR(200)", P("address")),
            ("c_photo", "VARCHAR(120)", P("biometric_face", note="path of the child's photo")),
            ("c_face_feature", "BYTEA", P("biometric_face", note="512-byte face template")),
            ("c_enrol_date", "DATE", CLEAN),
            ("c_status", "VARCHAR(10)", CLEAN),
            ("c_passport", "VARCHAR(20)", EMPTY("passport")),
        ],
        key="c_id",
    )
    pets = ["朵朵", "乐乐", "豆豆", "果果", "糖糖", "小宝", "天天", "贝贝", "琪琪", "多多"]
    children = []
    for i in range(1, n + 1):
        born = m.birth(2019, 2023)
        name = m.cn_name()
        children.append(name)
        child.rows.append(
            (
                i,
                f"{born.year + 3}{i:06d}",
                name,
                m.pick(LATIN_FIRST) if m.r.random() < 0.6 else None,
                m.pick(pets),
                m.pick([1, 2]),
                born,
                m.resident_id(born, hz) if m.r.random() < 0.95 else None,
                m.r.randint(1, len(CLASSES)),
                m.pick(["A", "B", "O", "AB", "未知"]),
                m.address(hz),
                f"/upload/child/{born.year}/{m.digits(8)}.jpg",
                m.r.randbytes(512) if m.r.random() < 0.7 else None,
                dt.date(2024, 9, 1) + dt.timedelta(days=m.r.randint(0, 700)),
                m.pick(["在园", "在园", "在园", "离园"]),
                None,
            )
        )

    guardian = Table(
        "guardian",
        [
            ("g_id", "INTEGER PRIMARY KEY", CLEAN),
            ("g_child_id", "INTEGER", CLEAN),
            ("g_name", "VARCHAR(20)", P("name")),
            ("g_relation", "VARCHAR(10)", P("family", note="父亲, 母亲: relation to the child")),
            ("g_mobile", "VARCHAR(20)", P("cn_mobile")),
            ("g_idcard", "VARCHAR(18)", P("cn_resident_id")),
            ("g_work_unit", "VARCHAR(60)", P("employment")),
            ("g_occupation", "VARCHAR(20)", P("employment")),
            ("g_wechat", "VARCHAR(40)", P("im_account")),
            ("g_is_primary", "BOOLEAN", CLEAN),
        ],
        key="g_id",
    )
    gid = 0
    for i in range(1, n + 1):
        for rel in m.r.sample(["父亲", "母亲"], m.pick([1, 2, 2])):
            gid += 1
            guardian.rows.append(
                (
                    gid,
                    i,
                    m.cn_name(),
                    rel,
                    m.mobile(),
                    m.resident_id(m.birth(1978, 1996)),
                    m.pick(EMPLOYERS),
                    m.pick(JOBS),
                    m.wechat_id() if m.r.random() < 0.6 else None,
                    rel == "母亲",
                )
            )

    pickup = Table(
        "pickup_authorization",
        [
            ("p_id", "INTEGER PRIMARY KEY", CLEAN),
            ("p_child_id", "INTEGER", CLEAN),
            ("p_name", "VARCHAR(20)", P("name")),
            ("p_relation", "VARCHAR(10)", P("family")),
            ("p_phone", "VARCHAR(20)", P("cn_mobile")),
            ("p_id_last4", "VARCHAR(4)", AMBIG("last four characters of the resident ID")),
            ("p_photo_url", "VARCHAR(160)", P("biometric_face", note="photo URL of the pick-up person")),
            ("p_valid_until", "DATE", CLEAN),
        ],
        key="p_id",
    )
    for i in range(1, int(n * 1.6)):
        pickup.rows.append(
            (
                i,
                m.r.randint(1, n),
                m.cn_name(),
                m.pick(RELATIONS),
                m.mobile(),
                m.digits(3) + m.pick("0123456789X"),
                f"https://oss.xhkids.cn/pickup/{m.digits(6)}_{m.digits(4)}.png",
                dt.date(2027, 7, 31),
            )
        )

    health = Table(
        "health_check",
        [
            ("h_id", "INTEGER PRIMARY KEY", CLEAN),
            ("h_child_id", "INTEGER", CLEAN),
            ("h_date", "DATE", CLEAN),
            ("h_height_cm", "NUMERIC(5,1)", P("health")),
            ("h_weight_kg", "NUMERIC(5,1)", P("health")),
            ("h_vision", "VARCHAR(10)", P("health")),
            ("h_allergy", "VARCHAR(40)", P("health")),
            ("h_medical_note", "TEXT", P("health")),
            ("h_doctor", "VARCHAR(20)", P("name", whose="staff")),
        ],
        key="h_id",
    )
    for i in range(1, 2 * n + 1):
        health.rows.append(
            (
                i,
                m.r.randint(1, n),
                dt.date(2025, 3, 1) + dt.timedelta(days=m.r.randint(0, 600)),
                round(m.r.uniform(85, 135), 1),
                round(m.r.uniform(11, 32), 1),
                f"{m.pick(['4.9', '5.0', '5.1', '4.8'])}/{m.pick(['4.9', '5.0', '5.1'])}",
                m.pick(KG_ALLERGY),
                m.pick(KG_MEDICAL),
                m.pick(["徐海燕", "周丽", "陈敏"]),
            )
        )

    attendance = Table(
        "attendance",
        [
            ("a_id", "INTEGER PRIMARY KEY", CLEAN),
            ("a_child_id", "INTEGER", CLEAN),
            ("a_date", "DATE", CLEAN),
            ("a_in_time", "TIME", CLEAN),
            ("a_out_time", "TIME", CLEAN),
            ("a_temperature", "NUMERIC(3,1)", P("health", note="morning body temperature")),
            ("a_picked_by", "VARCHAR(20)", P("name", note="who picked the child up")),
            ("a_gate", "VARCHAR(10)", CLEAN),
        ],
        key="a_id",
    )
    for i in range(1, 3 * n + 1):
        attendance.rows.append(
            (
                i,
                m.r.randint(1, n),
                dt.date(2026, 9, 1) + dt.timedelta(days=m.r.randint(0, 80)),
                dt.time(7, m.r.randint(30, 59)),
                dt.time(16, m.r.randint(30, 59)),
                round(m.r.uniform(36.1, 37.4), 1),
                m.cn_name() if m.r.random() < 0.9 else None,
                m.pick(["东门", "南门"]),
            )
        )

    fee = Table(
        "fee_payment",
        [
            ("f_id", "INTEGER PRIMARY KEY", CLEAN),
            ("f_child_id", "INTEGER", CLEAN),
            ("f_item", "VARCHAR(20)", CLEAN),
            ("f_amount", "NUMERIC(10,2)", CLEAN),
            ("f_payer", "VARCHAR(20)", P("name")),
            ("f_card_no", "VARCHAR(19)", P("bank_card")),
            ("f_trade_no", "VARCHAR(32)", DECOY),
            ("f_invoice_no", "VARCHAR(20)", DECOY),
            ("f_paid_at", "TIMESTAMP", CLEAN),
        ],
        key="f_id",
    )
    for i in range(1, 2 * n + 1):
        fee.rows.append(
            (
                i,
                m.r.randint(1, n),
                m.pick(["保教费", "伙食费", "兴趣班", "校车费"]),
                m.pick([1880, 2680, 650, 1200, 3900]),
                m.cn_name(),
                m.bank_card() if m.r.random() < 0.8 else None,
                trade_no(m),
                f"0{m.digits(11)}",
                m.moment(2024),
            )
        )

    report = Table(
        "daily_report",
        [
            ("r_id", "INTEGER PRIMARY KEY", CLEAN),
            ("r_child_id", "INTEGER", CLEAN),
            ("r_teacher_id", "INTEGER", CLEAN),
            ("r_date", "DATE", CLEAN),
            ("r_meal", "VARCHAR(10)", CLEAN),
            ("r_content", "TEXT", P("name", "health", note="teacher's note naming the child")),
        ],
        key="r_id",
    )
    for i in range(1, 2 * n + 1):
        c = m.r.randint(1, n)
        report.rows.append(
            (
                i,
                c,
                m.r.randint(1, 30),
                dt.date(2026, 9, 1) + dt.timedelta(days=m.r.randint(0, 80)),
                m.pick(["全部吃完", "吃了一半", "挑食"]),
                m.pick(REPORT_LINES).format(n=children[c - 1]),
            )
        )

    notice = Table(
        "notice",
        [
            ("n_id", "INTEGER PRIMARY KEY", CLEAN),
            ("n_title", "VARCHAR(80)", CLEAN),
            ("n_body", "TEXT", CLEAN),
            ("n_publisher", "VARCHAR(20)", CLEAN),
            ("n_published_at", "TIMESTAMP", CLEAN),
        ],
        key="n_id",
    )
    titles = [
        "国庆节放假通知",
        "秋季运动会报名",
        "流感预防小贴士",
        "家长开放日安排",
        "校车路线调整",
        "体检通知",
    ]
    for i in range(1, 61):
        t = m.pick(titles)
        notice.rows.append(
            (
                i,
                t,
                f"各位家长：{t}，详情请咨询园务办公室 {KG_PHONE} 或服务热线 {KG_HOTLINE}。星河幼儿园",
                "园务办公室",
                m.moment(2024),
            )
        )

    settings = Table(
        "sys_setting",
        [
            ("s_key", "VARCHAR(40) PRIMARY KEY", CLEAN),
            ("s_value", "VARCHAR(200)", CLEAN),
            ("s_remark", "VARCHAR(80)", CLEAN),
        ],
        key="s_key",
    )
    settings.rows.extend(
        [
            ("school.name", "杭州市西湖区星河幼儿园", "园所名称"),
            ("school.phone", KG_PHONE, "园务电话"),
            ("school.hotline", KG_HOTLINE, "招生热线"),
            ("school.address", "浙江省杭州市西湖区文三路199号", "园所地址"),
            ("school.email", "office@xhkids.cn", "园务邮箱"),
            ("school.credit_code", m.uscc(), "统一社会信用代码"),
            ("sms.sign", "【星河幼儿园】", "短信签名"),
            ("pickup.face_threshold", "0.82", "接送人脸比对阈值"),
        ]
    )

    menu = Table(
        "weekly_menu",
        [
            ("w_id", "INTEGER PRIMARY KEY", CLEAN),
            ("w_week", "VARCHAR(10)", CLEAN),
            ("w_day", "SMALLINT", CLEAN),
            ("w_lunch", "VARCHAR(60)", CLEAN),
            ("w_snack", "VARCHAR(40)", CLEAN),
            ("w_chef", "VARCHAR(20)", CLEAN),
        ],
        key="w_id",
    )
    for i in range(1, 121):
        menu.rows.append(
            (
                i,
                f"2026-W{i // 5 + 1:02d}",
                i % 5 + 1,
                "、".join(m.r.sample(DISHES, 3)),
                m.pick(["苹果", "香蕉", "酸奶", "小蛋糕"]),
                "食堂",
            )
        )
    return [cls, teacher, child, guardian, pickup, health, attendance, fee, report, notice, settings, menu]


# ---------------------------------------------------------------------------------------------
# courier (MariaDB)

COURIER_HOTLINE = "95338"
GOODS = ["文件", "服装", "数码配件", "食品", "化妆品", "图书", "日用品", "生鲜水果"]


def courier(n: int = 3000) -> list[Table]:
    m = Maker(SEED + 1)

    region = Table(
        "t_region",
        [
            ("adcode", "CHAR(6) PRIMARY KEY", DECOY),
            ("prov_name", "VARCHAR(20)", CLEAN),
            ("city_name", "VARCHAR(20)", CLEAN),
            ("dist_name", "VARCHAR(20)", CLEAN),
            ("zip", "CHAR(6)", CLEAN),
        ],
        key="adcode",
    )
    for p, c, d, code, z in DISTRICTS:
        region.rows.append((code, p, c, d, z))

    depot = Table(
        "t_depot",
        [
            ("depot_code", "VARCHAR(10) PRIMARY KEY", CLEAN),
            ("depot_name", "VARCHAR(40)", CLEAN),
            ("depot_tel", "VARCHAR(20)", DECOY),
            ("depot_addr", "VARCHAR(100)", CLEAN),
            ("manager_name", "VARCHAR(20)", P("name", whose="staff")),
            ("manager_mobile", "VARCHAR(20)", P("cn_mobile", whose="staff")),
            ("open_hours", "VARCHAR(20)", CLEAN),
        ],
        key="depot_code",
    )
    depots = []
    for i in range(1, 41):
        p, c, d, code, _ = m.pick(DISTRICTS)
        depots.append((f"{code[:4]}{i:03d}", f"{c}{d}{m.pick(['科技园', '中心', '东', '西'])}网点"))
        depot.rows.append(
            (
                depots[-1][0],
                depots[-1][1],
                m.landline(),
                f"{p}{c}{d}{m.pick(ROADS)}{m.r.randint(1, 300)}号物流园{m.r.randint(1, 9)}号仓",
                m.cn_name(),
                m.mobile(),
                "08:00-21:00",
            )
        )

    staff = Table(
        "t_courier",
        [
            ("emp_no", "VARCHAR(10) PRIMARY KEY", CLEAN),
            ("courier_name", "VARCHAR(20)", P("name", whose="staff")),
            ("phone", "VARCHAR(20)", P("cn_mobile", whose="staff")),
            ("id_card", "VARCHAR(18)", P("cn_resident_id", whose="staff")),
            ("depot_code", "VARCHAR(10)", CLEAN),
            ("vehicle_plate", "VARCHAR(10)", P("vehicle", whose="staff")),
            ("entry_date", "DATE", CLEAN),
            ("status", "TINYINT", CLEAN),
        ],
        key="emp_no",
    )
    couriers = []
    for i in range(1, 201):
        name, phone = m.cn_name(), m.mobile()
        couriers.append((f"E{i:05d}", name, phone))
        staff.rows.append(
            (
                f"E{i:05d}",
                name,
                phone,
                m.resident_id(m.birth(1975, 2003)),
                m.pick(depots)[0],
                m.plate() if m.r.random() < 0.5 else None,
                m.birth(2018, 2025),
                1,
            )
        )

    user = Table(
        "t_app_user",
        [
            ("user_id", "BIGINT PRIMARY KEY", CLEAN),
            ("nick_name", "VARCHAR(40)", P("name", note="WeChat nickname, some are real names")),
            ("mobile", "VARCHAR(20)", P("cn_mobile")),
            ("openid", "VARCHAR(40)", P("im_account")),
            ("reg_ip", "VARCHAR(40)", P("ip_address")),
            ("reg_time", "DATETIME", CLEAN),
            ("vip_level", "TINYINT", CLEAN),
        ],
        key="user_id",
    )
    nicks = ["快乐每一天", "Sunny", "阿杰", "小鱼儿", "大白", "Lily", "风中的云", "老王", "momo"]
    users = []
    for i in range(1, n // 2 + 1):
        uid = 100000 + i
        users.append(uid)
        user.rows.append(
            (
                uid,
                m.cn_name() if m.r.random() < 0.3 else m.pick(nicks),
                m.mobile(),
                m.openid(),
                m.ip(),
                m.moment(2021),
                m.r.randint(0, 3),
            )
        )

    book = Table(
        "t_address_book",
        [
            ("id", "BIGINT PRIMARY KEY", CLEAN),
            ("user_id", "BIGINT", CLEAN),
            ("contact_name", "VARCHAR(20)", P("name")),
            ("contact_phone", "VARCHAR(20)", P("cn_mobile")),
            ("area_code", "CHAR(6)", AMBIG("region code of the district")),
            ("detail_addr", "VARCHAR(120)", P("address")),
            ("tag", "VARCHAR(10)", CLEAN),
            ("is_default", "TINYINT", CLEAN),
        ],
    )
    for i in range(1, n + 1):
        dist = m.pick(DISTRICTS)
        book.rows.append(
            (
                i,
                m.pick(users),
                m.cn_name(),
                m.mobile(),
                dist[3],
                f"{m.pick(ROADS)}{m.r.randint(1, 999)}号{m.pick(ESTATES)}{m.r.randint(1, 30)}栋{m.r.randint(1, 28)}0{m.r.randint(1, 4)}",
                m.pick(["家", "公司", "学校", ""]),
                int(m.r.random() < 0.3),
            )
        )

    waybill = Table(
        "t_waybill",
        [
            ("waybill_no", "VARCHAR(20) PRIMARY KEY", DECOY),
            ("order_no", "VARCHAR(20)", DECOY),
            ("user_id", "BIGINT", CLEAN),
            ("snd_name", "VARCHAR(20)", P("name")),
            ("snd_mobile", "VARCHAR(20)", P("cn_mobile")),
            ("snd_prov", "VARCHAR(10)", AMBIG("province of the sender")),
            ("snd_city", "VARCHAR(10)", AMBIG("city of the sender")),
            ("snd_dist", "VARCHAR(10)", P("address", note="district of the sender")),
            ("snd_addr", "VARCHAR(120)", P("address")),
            ("rcv_name", "VARCHAR(20)", P("name")),
            ("rcv_mobile", "VARCHAR(20)", P("cn_mobile", note="masked 138****1234")),
            ("rcv_prov", "VARCHAR(10)", AMBIG("province of the receiver")),
            ("rcv_city", "VARCHAR(10)", AMBIG("city of the receiver")),
            ("rcv_dist", "VARCHAR(10)", P("address")),
            ("rcv_addr", "VARCHAR(120)", P("address")),
            ("goods_desc", "VARCHAR(40)", CLEAN),
            ("weight_kg", "DECIMAL(8,2)", CLEAN),
            ("freight", "DECIMAL(8,2)", CLEAN),
            ("pay_type", "VARCHAR(10)", CLEAN),
            ("courier_no", "VARCHAR(10)", CLEAN),
            ("depot_code", "VARCHAR(10)", CLEAN),
            ("sign_name", "VARCHAR(20)", P("name", note="who signed for the parcel")),
            ("remark", "VARCHAR(200)", P("name", "cn_mobile", note="free text")),
            ("created_time", "DATETIME", CLEAN),
        ],
        key="waybill_no",
    )
    waybills = []
    for _i in range(1, n + 1):
        sp, sc, sd, _, _ = m.pick(DISTRICTS)
        rp, rc, rd, _, _ = m.pick(DISTRICTS)
        rname = m.cn_name()
        no = f"YD{m.digits(13)}"
        waybills.append((no, rname))
        remark = m.pick(
            [
                "",
                "",
                "放门卫",
                "易碎，轻拿轻放",
                f"送货前联系{rname[0]}{m.pick(['先生', '女士'])} {m.mobile()}",
                f"代收人：{m.cn_name()}",
                "放菜鸟驿站",
            ]
        )
        ts = m.moment(2025)
        waybill.rows.append(
            (
                no,
                ts.strftime("%Y%m%d") + m.digits(10),
                m.pick(users) if m.r.random() < 0.6 else None,
                m.cn_name(),
                m.mobile(),
                sp,
                sc,
                sd,
                f"{m.pick(ROADS)}{m.r.randint(1, 999)}号{m.pick(ESTATES)}{m.r.randint(1, 30)}-{m.r.randint(1, 4)}-{m.r.randint(1, 28)}0{m.r.randint(1, 4)}",
                rname,
                masked(m.mobile()),
                rp,
                rc,
                rd,
                f"{m.pick(ROADS)}{m.r.randint(1, 999)}号{m.pick(ESTATES)}{m.r.randint(1, 30)}栋",
                m.pick(GOODS),
                round(m.r.uniform(0.2, 20), 2),
                m.pick([12, 15, 18, 23, 30]),
                m.pick(["寄付", "到付", "月结"]),
                m.pick(couriers)[0],
                m.pick(depots)[0],
                m.pick([rname, rname, "本人", "门卫", "快递柜", None]),
                remark,
                ts,
            )
        )

    idcheck = Table(
        "t_id_verify",
        [
            ("id", "BIGINT PRIMARY KEY", CLEAN),
            ("waybill_no", "VARCHAR(20)", DECOY),
            ("real_name", "VARCHAR(20)", P("name")),
            ("cert_type", "VARCHAR(10)", CLEAN),
            ("cert_no", "VARCHAR(20)", P("cn_resident_id")),
            ("verify_result", "VARCHAR(10)", CLEAN),
            ("operator_no", "VARCHAR(10)", CLEAN),
            ("verify_time", "DATETIME", CLEAN),
        ],
    )
    for i in range(1, n // 2 + 1):
        idcheck.rows.append(
            (
                i,
                m.pick(waybills)[0],
                m.cn_name(),
                "居民身份证",
                m.resident_id(m.birth(1955, 2006)),
                m.pick(["一致", "一致", "一致", "不一致"]),
                m.pick(couriers)[0],
                m.moment(2025),
            )
        )

    track = Table(
        "t_track_event",
        [
            ("id", "BIGINT PRIMARY KEY", CLEAN),
            ("waybill_no", "VARCHAR(20)", DECOY),
            ("event_code", "VARCHAR(10)", CLEAN),
            ("event_time", "DATETIME", CLEAN),
            ("depot_code", "VARCHAR(10)", CLEAN),
            ("event_desc", "VARCHAR(200)", P("name", "cn_mobile", note="couriers' and signers' names")),
        ],
    )
    tid = 0
    for no, rname in waybills:
        cno, cname, cphone = m.pick(couriers)
        d_from, d_to = m.pick(depots)[1], m.pick(depots)[1]
        events = [
            ("COLLECT", f"【{d_from}】已揽收"),
            ("DEPART", f"快件已从【{d_from}】发出，下一站【{d_to}】"),
            ("ARRIVE", f"快件已到达【{d_to}】"),
            ("DELIVER", f"【{d_to}】快递员 {cname}（{cphone}）正在为您派件"),
            ("SIGN", m.pick([f"已签收，签收人：{rname}", "已签收，签收人：本人", "已签收，签收人：快递柜"])),
        ]
        for code, desc in events[: m.r.randint(3, 5)]:
            tid += 1
            track.rows.append((tid, no, code, m.moment(2025), m.pick(depots)[0], desc))

    complaint = Table(
        "t_complaint",
        [
            ("id", "BIGINT PRIMARY KEY", CLEAN),
            ("waybill_no", "VARCHAR(20)", DECOY),
            ("category", "VARCHAR(10)", CLEAN),
            ("contact_mobile", "VARCHAR(20)", P("cn_mobile")),
            ("content", "TEXT", P("name", note="complaints name the courier or the complainant")),
            ("handler", "VARCHAR(20)", P("name", whose="staff")),
            ("status", "VARCHAR(10)", CLEAN),
        ],
    )
    for i in range(1, 301):
        cname = m.pick(couriers)[1]
        complaint.rows.append(
            (
                i,
                m.pick(waybills)[0],
                m.pick(["延误", "破损", "丢件", "服务态度"]),
                m.mobile(),
                m.pick(
                    [
                        f"快递员{cname}未经同意将快递放在门口，导致丢失。",
                        f"本人{m.cn_name()}，包裹外包装破损，要求赔偿。",
                        "三天了还没有派送，物流信息一直不更新。",
                        f"派件员{cname}态度恶劣，电话里骂人。",
                    ]
                ),
                m.cn_name(),
                m.pick(["已处理", "处理中"]),
            )
        )

    param = Table(
        "t_sys_param",
        [
            ("param_key", "VARCHAR(40) PRIMARY KEY", CLEAN),
            ("param_value", "VARCHAR(200)", CLEAN),
            ("descr", "VARCHAR(60)", CLEAN),
        ],
        key="param_key",
    )
    param.rows.extend(
        [
            ("service.hotline", COURIER_HOTLINE, "客服电话"),
            ("service.complaint_tel", "400-880-3380", "投诉电话"),
            ("service.email", "kefu@yundaexp-sample.cn", "客服邮箱"),
            ("company.address", "上海市青浦区盈港东路7766号", "总部地址"),
            ("sms.template.deliver", "您的快件正在派送，快递员电话{phone}，请保持电话畅通。", "派件短信模板"),
            ("id_verify.required", "true", "寄件实名制"),
        ]
    )

    sku = Table(
        "t_material_sku",
        [
            ("sku_code", "VARCHAR(20) PRIMARY KEY", DECOY),
            ("sku_name", "VARCHAR(40)", CLEAN),
            ("barcode", "VARCHAR(13)", DECOY),
            ("price", "DECIMAL(8,2)", CLEAN),
        ],
        key="sku_code",
    )
    for i, name in enumerate(["文件封", "纸箱1号", "纸箱3号", "气泡膜", "胶带", "防水袋", "面单纸"], 1):
        sku.rows.append((f"MAT{2024000 + i}", name, m.ean13(), m.pick([0.5, 1.2, 3.5, 8])))
    return [region, depot, staff, user, book, waybill, idcheck, track, complaint, param, sku]


# ---------------------------------------------------------------------------------------------
# gym (SQLite)

GYM_HOTLINE = "400-012-3366"
PLANS = ["月卡", "季卡", "年卡", "私教20节", "游泳年卡"]
HEALTH_NOTES = [
    "",
    "",
    "",
    "高血压史，控制强度",
    "膝关节半月板术后",
    "腰椎间盘突出",
    "孕期",
    "哮喘",
    "糖尿病",
]
ACTIONS = ["续卡", "退卡", "冻结", "转卡", "修改资料", "私教签到"]


def gym(n: int = 2000) -> list[Table]:
    m = Maker(SEED + 2)
    sz = DISTRICTS[2]

    dict_ = Table(
        "SYS_DICT",
        [
            ("DICT_TYP", "TEXT", CLEAN),
            ("DICT_CD", "TEXT", CLEAN),
            ("DICT_NM", "TEXT", CLEAN),
            ("SORT_NO", "INTEGER", CLEAN),
        ],
        key="DICT_CD",
    )
    for typ, items in {
        "GNDR_CD": ["男", "女"],
        "ID_TYP_CD": ["居民身份证", "护照", "港澳通行证"],
        "CARD_TYP_CD": PLANS,
        "STS_CD": ["正常", "冻结", "注销"],
    }.items():
        for i, name in enumerate(items, 1):
            dict_.rows.append((typ, str(i), name, i))

    parm = Table(
        "SYS_PARM",
        [("PARM_KEY", "TEXT PRIMARY KEY", CLEAN), ("PARM_VAL", "TEXT", CLEAN), ("PARM_DESC", "TEXT", CLEAN)],
        key="PARM_KEY",
    )
    parm.rows.extend(
        [
            ("STORE_HOTLINE", GYM_HOTLINE, "客服热线"),
            ("STORE_TEL", "0755-26651288", "前台电话"),
            ("STORE_EMAIL", "service@powerfit.cn", "客服邮箱"),
            ("HQ_ADDR", "广东省深圳市南山区科技园南路88号", "总部地址"),
            ("FACE_MATCH_THRESHOLD", "0.78", "人脸识别阈值"),
            ("WX_APPID", "wx8f3c2a91d07b5e46", "公众号AppID"),
        ]
    )

    store = Table(
        "STORE_INFO",
        [
            ("STORE_CD", "TEXT PRIMARY KEY", CLEAN),
            ("STORE_NM", "TEXT", CLEAN),
            ("STORE_TEL", "TEXT", DECOY),
            ("STORE_ADDR", "TEXT", CLEAN),
            ("MGR_NM", "TEXT", P("name", whose="staff")),
            ("MGR_MOB_NO", "TEXT", P("cn_mobile", whose="staff")),
        ],
        key="STORE_CD",
    )
    for i in range(1, 9):
        store.rows.append(
            (
                f"S{i:02d}",
                f"力健健身{m.pick(['海岸城', '科技园', '后海', '蛇口', '西丽', '前海'])}店",
                f"0755-2{m.digits(7)}",
                f"深圳市南山区{m.pick(ROADS)}{m.r.randint(1, 300)}号{m.r.randint(2, 5)}楼",
                m.cn_name(),
                m.mobile(),
            )
        )

    emp = Table(
        "EMP_INFO",
        [
            ("EMP_ID", "TEXT PRIMARY KEY", CLEAN),
            ("EMP_NM", "TEXT", P("name", whose="staff")),
            ("MOB_NO", "TEXT", P("cn_mobile", whose="staff")),
            ("POST_CD", "TEXT", CLEAN),
            ("STORE_CD", "TEXT", CLEAN),
            ("HIRE_DT", "TEXT", CLEAN),
            ("LOGIN_NM", "TEXT", P("account", whose="staff")),
            ("PWD_HASH", "TEXT", P("credential", whose="staff")),
        ],
        key="EMP_ID",
    )
    emps = []
    for i in range(1, 61):
        emps.append(f"EMP{i:04d}")
        emp.rows.append(
            (
                emps[-1],
                m.cn_name(),
                m.mobile(),
                m.pick(["COACH", "SALES", "FRONT", "MGR"]),
                f"S{m.r.randint(1, 8):02d}",
                m.birth(2018, 2025).strftime("%Y%m%d"),
                f"pf{i:04d}",
                m.bcrypt(),
            )
        )

    cust = Table(
        "CUST_INFO",
        [
            ("CUST_ID", "TEXT PRIMARY KEY", CLEAN),
            ("CUST_NM", "TEXT", P("name")),
            ("CUST_EN_NM", "TEXT", P("name", note="Latin name, e.g. SMITH JOHN")),
            ("GNDR_CD", "TEXT", P("gender", note="'1'/'2', dictionary GNDR_CD")),
            ("BIRTH_DT", "TEXT", P("birth_date", note="YYYYMMDD text")),
            ("ID_TYP_CD", "TEXT", CLEAN),
            ("ID_NO", "TEXT", P("cn_resident_id", "passport")),
            ("MOB_NO", "TEXT", P("cn_mobile")),
            ("TEL_NO", "TEXT", P("phone")),
            ("EMAIL_ADDR", "TEXT", P("email")),
            ("HOME_ADDR", "TEXT", P("address")),
            ("ZIP_CD", "TEXT", P("address")),
            ("EMER_CNTCT_NM", "TEXT", P("name")),
            ("EMER_CNTCT_MOB", "TEXT", P("cn_mobile")),
            ("OCCUP_NM", "TEXT", P("employment")),
            ("WX_NO", "TEXT", EMPTY("im_account")),
            ("REG_DT", "TEXT", CLEAN),
            ("STS_CD", "TEXT", CLEAN),
            ("SALES_EMP_ID", "TEXT", CLEAN),
            ("RMK", "TEXT", P("name", "cn_mobile", note="free text remarks")),
        ],
        key="CUST_ID",
    )
    custs = []
    for i in range(1, n + 1):
        born = m.birth(1965, 2008)
        name = m.cn_name()
        custs.append((f"C{i:07d}", name))
        foreign = m.r.random() < 0.06
        first, last = m.pick(LATIN_FIRST), m.pick(LATIN_LAST)
        cust.rows.append(
            (
                f"C{i:07d}",
                f"{first} {last}" if foreign else name,
                f"{last.upper()} {first.upper()}" if foreign or m.r.random() < 0.3 else None,
                m.pick(["1", "2"]),
                born.strftime("%Y%m%d"),
                "2" if foreign else "1",
                ("E" + m.digits(8)) if foreign else m.resident_id(born),
                m.mobile(),
                m.landline() if m.r.random() < 0.15 else None,
                m.email() if m.r.random() < 0.5 else None,
                m.address(sz),
                sz[4],
                m.cn_name(),
                m.mobile(),
                m.pick(["IT", "教师", "医生", "自由职业", "学生", "销售", "金融"]),
                None,
                m.moment(2020).strftime("%Y%m%d"),
                m.pick(["1", "1", "1", "2", "3"]),
                m.pick(emps),
                m.pick(
                    [
                        "",
                        "",
                        "",
                        "老会员介绍",
                        f"由{m.cn_name()}介绍，电话{m.mobile()}",
                        "希望减脂",
                        f"家属{m.cn_name()}同办",
                    ]
                ),
            )
        )

    card = Table(
        "MBR_CARD",
        [
            ("CARD_NO", "TEXT PRIMARY KEY", DECOY),
            ("CUST_ID", "TEXT", CLEAN),
            ("CARD_TYP_CD", "TEXT", CLEAN),
            ("BAL_AMT", "REAL", CLEAN),
            ("OPEN_DT", "TEXT", CLEAN),
            ("EXP_DT", "TEXT", CLEAN),
            ("BIND_BANK_CARD_NO", "TEXT", P("bank_card")),
            ("BANK_NM", "TEXT", CLEAN),
        ],
        key="CARD_NO",
    )
    for _i, (cid, _) in enumerate(custs, 1):
        body = "8888" + m.digits(14)
        bad = str((int(luhn_digit(body)) + 1) % 10)
        opened = m.birth(2021, 2026)
        card.rows.append(
            (
                body + bad,
                cid,
                str(m.r.randint(1, len(PLANS))),
                round(m.r.uniform(0, 5000), 2),
                opened.strftime("%Y%m%d"),
                (opened + dt.timedelta(days=365)).strftime("%Y%m%d"),
                m.bank_card() if m.r.random() < 0.4 else None,
                m.pick(["招商银行", "中国银行", "工商银行", "平安银行"]),
            )
        )

    bio = Table(
        "BIO_ENRL",
        [
            ("ENRL_ID", "INTEGER PRIMARY KEY", CLEAN),
            ("CUST_ID", "TEXT", CLEAN),
            ("FP_TMPL", "BLOB", P("biometric", note="fingerprint template")),
            ("FACE_TMPL", "BLOB", P("biometric_face")),
            ("FACE_IMG_URL", "TEXT", P("biometric_face", note="URL of the enrolment photo")),
            ("DEV_SN", "TEXT", CLEAN),
            ("ENRL_DT", "TEXT", CLEAN),
        ],
        key="ENRL_ID",
    )
    for i, (cid, _) in enumerate(custs, 1):
        if m.r.random() < 0.8:
            bio.rows.append(
                (
                    i,
                    cid,
                    m.r.randbytes(384),
                    m.r.randbytes(512) if m.r.random() < 0.7 else None,
                    f"https://img.powerfit.cn/face/{cid}_{m.digits(6)}.jpg",
                    f"ZK-F22-{m.pick(['0012', '0013', '0031'])}",
                    m.birth(2022, 2026).strftime("%Y%m%d"),
                )
            )

    meas = Table(
        "BODY_MEAS",
        [
            ("MEAS_ID", "INTEGER PRIMARY KEY", CLEAN),
            ("CUST_ID", "TEXT", CLEAN),
            ("MEAS_DT", "TEXT", CLEAN),
            ("HT_CM", "REAL", P("health")),
            ("WT_KG", "REAL", P("health")),
            ("BFR_PCT", "REAL", P("health", note="body fat rate")),
            ("BMI", "REAL", P("health")),
            ("WAIST_CM", "REAL", P("health")),
            ("BP_SYS", "INTEGER", P("health")),
            ("BP_DIA", "INTEGER", P("health")),
            ("HLTH_NOTE", "TEXT", P("health")),
            ("COACH_ID", "TEXT", CLEAN),
        ],
        key="MEAS_ID",
    )
    for i in range(1, n + n // 2):
        ht, wt = m.r.uniform(150, 190), m.r.uniform(45, 100)
        meas.rows.append(
            (
                i,
                m.pick(custs)[0],
                m.birth(2024, 2026).strftime("%Y%m%d"),
                round(ht, 1),
                round(wt, 1),
                round(m.r.uniform(12, 38), 1),
                round(wt / (ht / 100) ** 2, 1),
                round(m.r.uniform(60, 105), 1),
                m.r.randint(100, 160),
                m.r.randint(60, 100),
                m.pick(HEALTH_NOTES),
                m.pick(emps),
            )
        )

    pref = Table(
        "CUST_PREF",
        [
            ("CUST_ID", "TEXT PRIMARY KEY", CLEAN),
            ("PREF_JSON", "TEXT", P("im_account", note='{"wx": {"openid": ...}}')),
            ("UPD_TM", "TEXT", CLEAN),
        ],
        key="CUST_ID",
    )
    for cid, _ in custs:
        if m.r.random() < 0.7:
            doc = {
                "lang": "zh-CN",
                "notify": {"sms": m.r.random() < 0.5, "wx": True},
                "fav_cls": m.r.sample(["瑜伽", "动感单车", "普拉提", "搏击", "游泳"], 2),
                "wx": {"openid": m.openid(), "subscribe": 1},
            }
            pref.rows.append((cid, json.dumps(doc, ensure_ascii=False), m.moment(2024).isoformat(sep=" ")))

    order = Table(
        "ORD_MST",
        [
            ("ORD_NO", "TEXT PRIMARY KEY", DECOY),
            ("CUST_ID", "TEXT", CLEAN),
            ("SKU_CD", "TEXT", CLEAN),
            ("ORD_AMT", "REAL", CLEAN),
            ("PAY_CHNL_CD", "TEXT", CLEAN),
            ("TRX_NO", "TEXT", DECOY),
            ("ORD_TM", "TEXT", CLEAN),
        ],
        key="ORD_NO",
    )
    for _i in range(1, n + 1):
        t = m.moment(2023)
        order.rows.append(
            (
                t.strftime("%Y%m%d") + m.digits(10),
                m.pick(custs)[0],
                f"SKU-{m.r.randint(1, 12):04d}",
                m.pick([299, 899, 2399, 4800, 6800]),
                m.pick(["WX", "ALI", "CARD", "CASH"]),
                trade_no(m),
                t.strftime("%Y%m%d%H%M%S"),
            )
        )

    prod = Table(
        "PROD_INFO",
        [
            ("SKU_CD", "TEXT PRIMARY KEY", CLEAN),
            ("PROD_NM", "TEXT", CLEAN),
            ("UNIT_PRC", "REAL", CLEAN),
            ("BAR_CD", "TEXT", DECOY),
        ],
        key="SKU_CD",
    )
    for i in range(1, 13):
        prod.rows.append(
            (
                f"SKU-{i:04d}",
                m.pick(PLANS + ["蛋白粉", "运动水壶", "毛巾"]),
                m.pick([39, 299, 899]),
                m.ean13(),
            )
        )

    log = Table(
        "AUDIT_LOG",
        [
            ("LOG_ID", "INTEGER PRIMARY KEY", CLEAN),
            ("OPR_ID", "TEXT", CLEAN),
            ("OPR_TM", "TEXT", CLEAN),
            ("ACTN_CD", "TEXT", CLEAN),
            ("LOG_MSG", "TEXT", P("name", "cn_mobile", note="operator's message naming the customer")),
            ("CLIENT_IP", "TEXT", AMBIG("front-desk workstation on the gym's LAN")),
        ],
        key="LOG_ID",
    )
    for i in range(1, 2 * n + 1):
        cid, name = m.pick(custs)
        action = m.pick(ACTIONS)
        msg = m.pick(
            [
                f"会员{name}({cid}){action}",
                f"{action}：客户 {name}，卡号 {cid}",
                f"修改会员{cid}手机号 {masked(m.mobile())} -> {m.mobile()}",
                f"会员{name}私教签到，教练 {m.pick(emps)}",
                f"系统自动任务：{action}批处理完成",
            ]
        )
        log.rows.append(
            (
                i,
                m.pick(emps),
                m.moment(2024).strftime("%Y-%m-%d %H:%M:%S"),
                action,
                msg,
                f"192.168.1.{m.r.randint(10, 40)}",
            )
        )

    booking = Table(
        "CLS_BKNG",
        [
            ("BKNG_ID", "INTEGER PRIMARY KEY", CLEAN),
            ("CUST_ID", "TEXT", CLEAN),
            ("CLS_NM", "TEXT", CLEAN),
            ("BKNG_TM", "TEXT", CLEAN),
            ("SEAT_NO", "TEXT", CLEAN),
            ("COACH_NM", "TEXT", P("name", whose="staff")),
        ],
        key="BKNG_ID",
    )
    coaches = [m.cn_name() for _ in range(12)]
    for i in range(1, n + 1):
        booking.rows.append(
            (
                i,
                m.pick(custs)[0],
                m.pick(["瑜伽", "动感单车", "普拉提", "搏击", "HIIT"]),
                m.moment(2025).strftime("%Y%m%d%H%M"),
                f"{m.pick(string.ascii_uppercase[:4])}{m.r.randint(1, 30)}",
                m.pick(coaches),
            )
        )
    return [dict_, parm, store, emp, cust, card, bio, meas, pref, order, prod, log, booking]


DATABASES = {
    "kindergarten": ("postgresql", kindergarten),
    "courier": ("mariadb", courier),
    "gym": ("sqlite", gym),
}


def truth(db: str) -> dict:
    return generate.truth(db, DATABASES, SEED)


def load(db: str, url: str) -> None:
    generate.load(db, url, DATABASES)


if __name__ == "__main__":
    generate.main(DATABASES, SEED, __doc__)
