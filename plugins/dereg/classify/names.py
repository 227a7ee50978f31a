"""Column-name hints: what a column's name suggests it holds.

Names are matched whole (lower-cased) and by their parts (split on `_`, `-`, spaces and camelCase),
in English, in pinyin (including the initials Chinese schemas often use, such as sfzh for 身份证号)
and in Chinese. A hint is evidence, not a verdict: the engine lets values that contradict a hint
win, and uses a hint alone only for what values cannot prove (a name, an address, a health note).
"""

from __future__ import annotations

import functools
import re

# category -> names that mean it when they are the whole column name
_WHOLE: dict[str, set[str]] = {
    "name": {
        "name",
        "full_name",
        "fullname",
        "real_name",
        "realname",
        "first_name",
        "last_name",
        "given_name",
        "family_name",
        "surname",
        "xm",
        "xingming",
        "姓名",
        "名字",
        "jhr",
        "jhrxm",
        "监护人",
        "监护人姓名",
        "guardian",
        "guardian_name",
        "payer_name",
        "student_name",
        "parent_name",
        "contact_name",
        "customer_name",
        "xsxm",
        "学生姓名",
        "家长姓名",
        "联系人",
        # names people go by: nicknames and display names are chosen by the person and name them
        "nickname",
        "nick_name",
        "nick",
        "display_name",
        "displayname",
        "payer",
        "contact",
        "consignee",
        "昵称",
        "收货人",
        "付款人",
        # an invoice title is a company's name or, for an individual's invoice, the person's
        "bill_header",
        "bill_title",
        "invoice_title",
        "invoice_header",
        "发票抬头",
        # pinyin of the same: 发票抬头 fapiao_taitou / fptt, 付款人 fukuanren, 联系人 lianxiren
        "fptt",
        "fapiao_taitou",
        "taitou",
        "fukuanren",
        "lianxiren",
        "shouhuoren",
        "shoujianren",
        "xmpy",
    },
    "gender": {"gender", "sex", "xb", "xingbie", "性别"},
    "birth_date": {
        "birth_date",
        "birthdate",
        "birthday",
        "dob",
        "date_of_birth",
        "born_on",
        "csrq",
        "chusheng_riqi",
        "chushengriqi",
        "shengri",
        "出生日期",
        "生日",
    },
    "cn_resident_id": {
        "id_number",
        "id_no",
        "idno",
        "id_card",
        "idcard",
        "id_card_no",
        "idcard_no",
        "national_id",
        "resident_id",
        "sfz",
        "sfzh",
        "sfzhm",
        "sfzjhm",
        "zjhm",
        "shenfenzheng",
        "身份证",
        "身份证号",
        "身份证号码",
        "证件号码",
    },
    "cn_mobile": {
        "mobile",
        "mobile_no",
        "mobile_phone",
        "cellphone",
        "cell_phone",
        "sjh",
        "sjhm",
        "shouji",
        "shoujihao",
        "shoujihaoma",
        "手机",
        "手机号",
        "手机号码",
    },
    "phone": {
        "phone",
        "phone_no",
        "telephone",
        "tel",
        "contact_phone",
        "lxdh",
        "dh",
        "dianhua",
        "lianxidianhua",
        "联系电话",
        "电话",
    },
    "email": {
        "email",
        "e_mail",
        "mail",
        "email_address",
        "dzyx",
        "yx",
        "youxiang",
        "邮箱",
        "电子邮箱",
        "电子邮件",
    },
    "address": {
        "address",
        "addr",
        "home_address",
        "street",
        "jtzz",
        "zz",
        "dz",
        "dizhi",
        "zhuzhi",
        "jiatingzhuzhi",
        "tongxundizhi",
        "家庭住址",
        "住址",
        "地址",
        "通讯地址",
    },
    "bank_card": {
        "bank_card",
        "bank_card_no",
        "card_no",
        "cardno",
        "bank_account",
        "account_no",
        "yhkh",
        "yhk",
        "yhzh",
        "银行卡号",
        "银行卡",
        "银行账号",
    },
    "health": {
        "health",
        "health_notes",
        "medical",
        "medical_notes",
        "allergy",
        "allergies",
        "jk",
        "jkzk",
        "健康",
        "健康状况",
        "过敏",
        "过敏史",
        "病史",
        # what a patient complains of and what the doctor found (主诉, 诊断, 症状, 病历)
        "chief_complaint",
        "complaint_of",
        "diagnosis",
        "symptom",
        "symptoms",
        "medical_history",
        "medical_record",
        "zhusu",
        "zhenduan",
        "zhengzhuang",
        "bingli",
        "bingshi",
        "jiwangshi",
        "主诉",
        "诊断",
        "症状",
        "病历",
        "既往史",
        # a blood type is a medical fact about its holder (血型 xuexing)
        "blood_type",
        "blood_group",
        "xuexing",
        "血型",
    },
    # a person's relation to another (父亲, 母亲, 外婆 of a child): 家庭关系, listed among personal
    # basic information by GB/T 35273 Annex A; concluded only when the values are kinship words
    "family": {
        "relation",
        "relationship",
        "kinship",
        "guanxi",
        "yxsgx",
        "jzgx",
        "关系",
        "亲属关系",
        "与学生关系",
        "与本人关系",
        "家庭关系",
    },
    "passport": {
        "passport",
        "passport_no",
        "hzh",
        "hzhm",
        "txz",
        "txzh",
        "gatxz",
        "护照",
        "护照号",
        "护照号码",
        "通行证",
        "通行证号",
        "港澳通行证",
        "台胞证",
    },
    "im_account": {
        "openid",
        "open_id",
        "unionid",
        "union_id",
        "weibo",
        "weibo_id",
        "alipay",
        "alipay_account",
        "alipay_user_id",
        "wechat",
        "weixin",
        "wx",
        "wxh",
        "wechat_id",
        "qq",
        "qq_no",
        "qqh",
        "微信",
        "微信号",
        "qq号",
    },
    "ip_address": {"ip", "ip_address", "ipaddr", "ip_addr", "login_ip", "last_ip", "client_ip", "ip地址"},
    # a login name identifies its holder (GB/T 35273 lists accounts among personal information)
    "account": {
        "username",
        "user_name",
        "login",
        "login_name",
        "loginname",
        "account",
        "account_name",
        "用户名",
        "账号",
        # pinyin: 用户名 yonghuming, 账号 zhanghao, 登录名 dengluming
        "yonghuming",
        "zhanghao",
        "dengluming",
    },
    # a password or its hash is 鉴别信息: sensitive (GB/T 35273 Annex B)
    "credential": {
        "password",
        "passwd",
        "pwd",
        "password_hash",
        "passwordhash",
        "pass_hash",
        "password_digest",
        "mima",
        "denglumima",
        "密码",
    },
    # a person's job, employer or school, in their profile
    "employment": {
        "job",
        "occupation",
        "profession",
        "employer",
        "work_unit",
        "gzdw",
        "zhiye",
        "gongzuodanwei",
        "职业",
        "工作单位",
    },
    # account ids issued by platforms to one person: WeChat openid/unionid, Weibo, Alipay, a device
    "device_id": {"device_id", "deviceid", "device_token", "imei", "idfa", "oaid", "android_id", "设备号"},
    # a car's licence plate: its owner's (车牌号 chepai / cph)
    "vehicle": {
        "plate",
        "plate_no",
        "plate_number",
        "license_plate",
        "licence_plate",
        "car_plate",
        "vehicle_plate",
        "chepai",
        "chepaihao",
        "cph",
        "车牌",
        "车牌号",
        "车牌号码",
    },
    "biometric_face": {
        "photo",
        "avatar",
        "face",
        "face_image",
        "portrait",
        "fingerprint",
        "zhaopian",
        "zp",
        "tx",
        "rlzp",
        "zw",
        "照片",
        "头像",
        "人脸",
        "人脸照片",
        "指纹",
    },
}

# Initials of compound Chinese names: 监护人手机号 jhrsjh, 家长身份证号 jzsfzh, 联系人电话 lxrdh, ...
for _who in ("jhr", "jz", "lxr", "xs", "fq", "mq"):
    _WHOLE["cn_mobile"] |= {_who + "sjh", _who + "sjhm"}
    _WHOLE["cn_resident_id"] |= {_who + "sfzh", _who + "sfzhm", _who + "zjhm"}
    _WHOLE["phone"] |= {_who + "dh", _who + "lxdh"}
    _WHOLE["name"] |= {_who + "xm"}
    _WHOLE["address"] |= {_who + "zz", _who + "jtzz", _who + "dz"}

# category -> parts that mean it anywhere in a longer name (payer_mobile, student_birthday, ...)
_PART: dict[str, set[str]] = {
    "name": {"xm", "xingming", "姓名", "nickname", "昵称", "taitou", "抬头"},
    "gender": {"gender", "sex", "性别"},
    "birth_date": {"birthday", "birthdate", "dob", "csrq", "chushengriqi", "shengri", "出生日期", "生日"},
    "cn_resident_id": {"idcard", "sfzh", "sfz", "身份证"},
    "cn_mobile": {"mobile", "cellphone", "sjh", "shouji", "手机"},
    "phone": {"phone", "telephone", "tel", "lxdh", "电话"},
    "email": {"email", "邮箱"},
    "address": {"address", "addr", "jtzz", "dizhi", "zhuzhi", "住址", "地址"},
    "bank_card": {"yhkh", "bankcard", "银行卡"},
    "health": {
        "health",
        "medical",
        "allergy",
        "allergies",
        "diagnosis",
        "symptom",
        "symptoms",
        "zhenduan",
        "健康",
        "过敏",
        "诊断",
        "症状",
        "主诉",
    },
    "passport": {"passport", "护照", "通行证"},
    "im_account": {
        "wechat",
        "weixin",
        "qq",
        "微信",
        "openid",
        "unionid",
        "weibo",
        "alipay",
        "微博",
        "支付宝",
    },
    "account": {"username", "yonghuming", "用户名", "账号"},
    "credential": {"password", "passwd", "mima", "密码"},
    "device_id": {"imei", "idfa", "oaid"},
    "vehicle": {"chepai", "车牌"},
    "ip_address": {"ip", "ipaddr", "ip地址"},
    "biometric_face": {
        "photo",
        "avatar",
        "face",
        "fingerprint",
        "portrait",
        "照片",
        "头像",
        "人脸",
        "指纹",
    },
}

# two consecutive parts inside longer names: payer_bank_card, guardian_id_number, student_birth_date
_PAIRS: dict[tuple[str, str], str] = {
    ("bank", "card"): "bank_card",
    ("card", "no"): "bank_card",
    ("id", "number"): "cn_resident_id",
    ("id", "card"): "cn_resident_id",
    ("id", "no"): "cn_resident_id",
    ("birth", "date"): "birth_date",
    ("date", "of"): "birth_date",
    ("full", "name"): "name",
    ("real", "name"): "name",
    ("payer", "name"): "name",
    ("guardian", "name"): "name",
    ("parent", "name"): "name",
    ("student", "name"): "name",
    ("contact", "name"): "name",
    ("home", "address"): "address",
    ("nick", "name"): "name",
    ("display", "name"): "name",
    ("receiver", "name"): "name",
    ("consignee", "name"): "name",
    ("member", "name"): "name",
    ("customer", "name"): "name",
    ("user", "name"): "account",
    ("login", "name"): "account",
    ("open", "id"): "im_account",
    ("union", "id"): "im_account",
    ("device", "id"): "device_id",
    ("plate", "no"): "vehicle",
    ("license", "plate"): "vehicle",
    ("detail", "address"): "address",
    ("e", "mail"): "email",
    ("birth", "day"): "birth_date",
    ("chief", "complaint"): "health",
    # a name written in pinyin or Latin letters beside the Chinese one: name_pinyin, xingming_pinyin
    ("name", "pinyin"): "name",
    ("pinyin", "name"): "name",
    ("xingming", "pinyin"): "name",
    ("english", "name"): "name",
    ("name", "en"): "name",
    ("en", "name"): "name",
    # who signed for a parcel, who sent it: a person named by their role
    ("sign", "name"): "name",
    ("signer", "name"): "name",
    ("sender", "name"): "name",
    ("blood", "type"): "health",
    ("blood", "group"): "health",
}

# Abbreviated parts of UPPER_CASE schemas (CUST_NM, MOB_NO, BIRTH_DT, GNDR_CD, PWD_HASH, FP_TMPL,
# ZIP_CD) and of courier or banking ones (snd_, rcv_): each is read as the word it stands for before
# the parts are matched, so BIRTH_DT is birth_date and LOGIN_NM login_name.
_ABBREVIATIONS = {
    "nm": "name",
    "mob": "mobile",
    "mbl": "mobile",
    "dt": "date",
    "gndr": "gender",
    "brth": "birth",
    "cntct": "contact",
    "emer": "emergency",
    "emerg": "emergency",
    "occup": "occupation",
    "tmpl": "template",
    "fp": "fingerprint",
    "pwd": "password",
    "pswd": "password",
    "passwd": "password",
    "cust": "customer",
    "mbr": "member",
    "snd": "sender",
    "rcv": "receiver",
    "recv": "receiver",
    "dist": "district",
    "prov": "province",
    "cd": "code",
    "eml": "email",
    "hlth": "health",
    "rmk": "remark",
    "rmks": "remarks",
}


def _expanded(parts: list[str]) -> list[str]:
    return [_ABBREVIATIONS.get(p, p) for p in parts]


def _unprefixed(parts: list[str]) -> list[str]:
    """Parts without a one-letter table prefix (c_name, g_mobile, t_login in a schema that
    prefixes every column with its table's initial); the parts unchanged otherwise."""
    if len(parts) >= 2 and len(parts[0]) == 1 and parts[0].isascii() and parts[0].isalpha():
        return parts[1:]
    return parts


def _forms(column: str) -> list[str]:
    """The whole-name forms of a column: as written, abbreviations expanded, a one-letter prefix
    dropped (BIRTH_DT -> birth_date, c_name -> name, LOGIN_NM -> login_name)."""
    whole = column.strip().lower()
    parts = _expanded(split_name(column))
    forms = [whole, "_".join(parts), "_".join(_unprefixed(parts))]
    return list(dict.fromkeys(f for f in forms if f))


def split_name(column: str) -> list[str]:
    """Parts of a column name: PayerMobile, payer_mobile and payer-mobile give [payer, mobile]."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])", "_", column.strip())
    return [p for p in re.split(r"[_\-\s.]+", spaced.lower()) if p]


def hints(column: str) -> list[str]:
    """Categories the column name suggests, most specific first; [] when the name says nothing."""
    return list(_hints(column))


@functools.lru_cache(maxsize=4096)
def _hints(column: str) -> tuple[str, ...]:
    # cached: a JSON column asks for every key of every document
    forms = _forms(column)
    found = [cat for cat, whole in _WHOLE.items() if any(f in whole for f in forms)]
    parts = _expanded(split_name(column))
    for pair in zip(parts, parts[1:], strict=False):
        cat = _PAIRS.get(pair)
        if cat and cat not in found:
            found.append(cat)
    for part in parts:
        for cat, words in _PART.items():
            if cat in found:
                continue
            # Chinese words also count inside a part (学生身份证号), pinyin and English only whole
            if part in words or any(not w.isascii() and w in part for w in words):
                found.append(cat)
    return tuple(found)


def hint(column: str) -> str | None:
    """The most specific category the name suggests, or None."""
    found = hints(column)
    return found[0] if found else None


# Parts of an address that are only personal in a record about a person (a receiver's district and
# postcode; a shop's city or a country table is not): the engine counts them as an address when the
# same table holds a person's name or contact number.
ADDRESS_PARTS = frozenset(
    {
        "district",
        "postal_code",
        "postalcode",
        "post_code",
        "postcode",
        "zip",
        "zipcode",
        "zip_code",
        "province",
        "city",
        "region",
        "county",
        "street",
        "邮编",
        "邮政编码",
        "省",
        "省份",
        "城市",
        "区县",
        "区",
    }
)


def address_part(column: str) -> bool:
    """The column's name says it holds one part of an address (a district, a postcode, a city),
    alone or after an owner (receiver_city)."""
    parts = _unprefixed(_expanded(split_name(column)))
    if any(f in ADDRESS_PARTS for f in _forms(column)):
        return True
    if len(parts) >= 2 and ("_".join(parts[-2:]) in ADDRESS_PARTS or parts[-1] in ADDRESS_PARTS):
        return True
    return False


_POSTCODES = frozenset(
    {"postal_code", "postalcode", "post_code", "postcode", "zip", "zipcode", "zip_code", "邮编", "邮政编码"}
)


def postcode(column: str) -> bool:
    """The column's name says a postcode (ZIP_CD, post_code, 邮编); POST_CD may also be a job's post."""
    parts = _unprefixed(_expanded(split_name(column)))
    return any(f in _POSTCODES for f in _forms(column)) or "_".join(parts[-2:]) in _POSTCODES


# A person's school, class, employer or job: personal (general) in a record about a person (a
# student's or member's profile), not in a table of schools or a delivery's company. Matched as
# the whole column name only: `delivery_company` is whose parcel service, not whose employer.
PROFILE_PARTS = frozenset(
    {
        "school",
        "school_name",
        "schoolname",
        "class",
        "class_name",
        "classname",
        "clazz",
        "company",
        "company_name",
        "companyname",
        "work_company",
        "employer",
        "work_unit",
        "workplace",
        "job",
        "job_title",
        "jobtitle",
        "occupation",
        "profession",
        "学校",
        "学校名称",
        "就读学校",
        "班级",
        "公司",
        "公司名称",
        "工作单位",
        "单位",
        "职业",
        "职位",
        "岗位",
        # pinyin: 学校 xuexiao, 就读学校 jiuduxuexiao, 班级 banji, 工作单位 gongzuodanwei, 职业 zhiye
        "xuexiao",
        "jiuduxuexiao",
        "banji",
        "gongsi",
        "danwei",
        "gongzuodanwei",
        "zhiye",
        "zhiwei",
        "gangwei",
    }
)


def profile_part(column: str) -> bool:
    """The column's name says it holds a person's school, class, employer or job."""
    forms = _forms(column)
    # OCCUP_NM, job_name: the name of the job is the job
    forms += [f.removesuffix("_name") for f in forms]
    return any(f in PROFILE_PARTS for f in forms)


# A remark is free text whatever its length: 备注 holding 有高血压 in one row of eight is a note
# about that person, as a TEXT column's would be.
_REMARKS = frozenset(
    {
        "remark",
        "remarks",
        "note",
        "notes",
        "memo",
        "comment",
        "comments",
        "beizhu",
        "bz",
        "备注",
        "说明",
        "批注",
    }
)


def remark(column: str) -> bool:
    """The column's name says it holds remarks (remark, user_note, RMK, beizhu, 备注, 客服备注)."""
    parts = _expanded(split_name(column))
    if parts[-1:] and parts[-1] in _REMARKS:
        return True
    return any(not w.isascii() and column.strip().endswith(w) for w in _REMARKS)


# The name of the organisation a record is about: a CRM's account, a supplier, a merchant. A table
# with such a column and nobody's name, number or identifier beside it is a record about an
# organisation: its switchboard, address and e-mail are the organisation's.
_ORGANISATION_WORDS = frozenset(
    {
        "company",
        "corp",
        "corporation",
        "org",
        "organization",
        "organisation",
        "enterprise",
        "firm",
        "business",
        "merchant",
        "supplier",
        "vendor",
        "gongsi",
        "qiye",
        "danwei",
    }
)
_ORGANISATION_WHOLE = frozenset(
    {"gsmc", "qymc", "dwmc", "公司名称", "企业名称", "单位名称", "商户名称", "供应商名称", "机构名称"}
)


def organisation_name(column: str) -> bool:
    """The column's name says it holds an organisation's name (company_name, supplier_name, 企业名称)."""
    parts = split_name(column)
    if column.strip().lower() in _ORGANISATION_WHOLE:
        return True
    return len(parts) >= 2 and parts[-1] in ("name", "mc", "mingcheng") and parts[-2] in _ORGANISATION_WORDS


#: names that say "name" without saying whose: a product's, a category's or a person's
GENERIC_NAMES = frozenset({"name", "名称", "名字"})


def is_generic_name(column: str) -> bool:
    """The column is called just `name`: a person's name only in a record about a person."""
    return any(f in GENERIC_NAMES for f in _forms(column))


# Body measurements: a person's height, weight, body fat, blood pressure or temperature is health
# information about them; a parcel's weight or a room's temperature is not. The engine counts these
# as health in a record about a person that holds two of them or more (a body-measurement record),
# or one body temperature whose values are all in a human body's range.
BODY_MEASURES = frozenset(
    {
        "height",
        "ht",
        "weight",
        "wt",
        "bmi",
        "body_fat",
        "bfr",
        "fat_rate",
        "waist",
        "hip",
        "blood_pressure",
        "bp",
        "systolic",
        "diastolic",
        "heart_rate",
        "pulse",
        "temperature",
        "body_temperature",
        "vision",
        "shengao",
        "tizhong",
        "tiwen",
        "xueya",
        "shili",
        "yaowei",
        "tizhilv",
        "身高",
        "体重",
        "体温",
        "血压",
        "视力",
        "腰围",
        "心率",
        "脉搏",
        "体脂",
        "体脂率",
    }
)
_UNITS = frozenset(
    {"cm", "mm", "m", "kg", "g", "jin", "pct", "percent", "rate", "val", "value", "sys", "dia"}
)


def body_measure(column: str) -> str | None:
    """The body measurement the column's name says it holds (h_height_cm -> height, BP_SYS -> bp),
    or None."""
    parts = [p for p in _unprefixed(split_name(column)) if p not in _UNITS] or _unprefixed(split_name(column))
    for form in ("_".join(parts), *parts, *("_".join(pair) for pair in zip(parts, parts[1:], strict=False))):
        if form in BODY_MEASURES:
            return form
    whole = column.strip()
    return next((w for w in BODY_MEASURES if not w.isascii() and w in whole), None)


# A column that refers to a person by their key: child_id, CUST_ID, member_no, h_child_id
_PERSON_WORDS = frozenset(
    {
        "customer",
        "cust",
        "member",
        "mbr",
        "child",
        "kid",
        "student",
        "stu",
        "pupil",
        "patient",
        "user",
        "employee",
        "emp",
        "staff",
        "person",
        "athlete",
        "guest",
        "client",
        "xuesheng",
        "huiyuan",
        "学生",
        "会员",
        "患者",
        "客户",
        "员工",
        "幼儿",
    }
)


def person_reference(column: str) -> bool:
    """The column's name says it holds a person's key (child_id, CUST_ID, member_no)."""
    parts = _unprefixed(split_name(column))
    return len(parts) >= 2 and parts[-1] in ("id", "no") and any(p in _PERSON_WORDS for p in parts[:-1])


# Places and organisations whose own telephone, address or e-mail a column may hold: STORE_TEL in
# a table of stores, depot_addr in a table of depots. Named after the table's own subject, such a
# column is the place's contact, even beside its manager's name.
_PLACE_WORDS = frozenset(
    {
        "store",
        "shop",
        "depot",
        "branch",
        "outlet",
        "warehouse",
        "site",
        "station",
        "office",
        "campus",
        "school",
        "hospital",
        "clinic",
        "dept",
        "department",
        "company",
        "corp",
        "org",
        "merchant",
        "supplier",
        "vendor",
        "venue",
        "club",
        "hall",
        "wangdian",
        "mendian",
        "cangku",
        "xiaoqu",
    }
)
_TABLE_NOISE = frozenset(
    {"t", "tb", "tbl", "info", "mst", "master", "list", "base", "dim", "ods", "dwd", "sys"}
)


def place_own_column(table: str, column: str) -> bool:
    """The column is named after the place or organisation its table lists (STORE_TEL in
    STORE_INFO, depot_addr in t_depot): that place's own contact."""
    subject = {p for p in split_name(table.rsplit(".", 1)[-1]) if p not in _TABLE_NOISE}
    parts = split_name(column)
    return len(parts) >= 2 and parts[0] in subject and parts[0] in _PLACE_WORDS


# Numbers of documents: an invoice's, an order's, a payment's. Their digits may have a telephone's or
# a card's shape (an invoice code 0xx...), but they number a document, not a person's line or card.
_DOCUMENT_WORDS = frozenset(
    {
        "invoice",
        "order",
        "trade",
        "transaction",
        "trx",
        "txn",
        "bill",
        "waybill",
        "tracking",
        "serial",
        "receipt",
        "voucher",
        "ticket",
        "contract",
        "batch",
        "fapiao",
        "dingdan",
        "liushui",
        "fph",
        "fpdm",
    }
)


def document_number(column: str) -> bool:
    """The column's name says it numbers a document (invoice_no, f_trade_no, ORD_NO, waybill_no)."""
    parts = _unprefixed(split_name(column))
    parts = ["order" if p == "ord" else p for p in parts]
    return (
        len(parts) >= 2
        and parts[-1] in ("no", "number", "num", "code", "sn", "id", "hao", "haoma")
        and any(p in _DOCUMENT_WORDS for p in parts[:-1])
    )
