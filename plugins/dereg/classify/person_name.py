"""Personal names (姓名): a Chinese name of 2 to 4 characters starting with a common surname
(single or compound: 王, 李, 欧阳, 司马), optionally with the middle dot of transliterated names;
or a romanised name of 2 or 3 capitalised words (Zhang Wei, Wang Xiaoming).

A name has no checksum: `is_valid` says a value has the shape of a name, which the engine believes
under a column name that says so (姓名, xm, name) or when nearly every value of a text column is a
Chinese name (`is_certain`). Names are not searched inside free text.

>>> is_valid("欧阳娜娜"), is_valid("数学提高班"), is_valid("苏州"), is_valid("黄金会员")
(True, False, False, False)
>>> mask("张伟")
'张*'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, whole_value

CATEGORY = "name"
LEVEL = "general"
EMBEDDED = False
PLAIN_DIGITS = False  # never takes a run of plain digits: a name is written in letters

# The most common surnames (about 90 % of the population) and the compound ones still in use.
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪"
    "范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞"
    "颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻"
    "祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇"
    "栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝萧傅阎鞠赖洪匡荆储谈鄢胥祖楼封郜奚冀蔺雍漆"
)
COMPOUND_SURNAMES = (
    "欧阳",
    "司马",
    "诸葛",
    "上官",
    "东方",
    "皇甫",
    "令狐",
    "慕容",
    "尉迟",
    "公孙",
    "长孙",
    "夏侯",
    "司徒",
    "端木",
)
PATTERN = re.compile(r"[\u4e00-\u9fff]{2,4}|[A-Z][a-z]+(?: [A-Z][a-z]+){1,2}")
_CJK_NAME = re.compile(r"[\u4e00-\u9fff]{1,3}(?:·[\u4e00-\u9fff]{1,5})?|[\u4e00-\u9fff]{2,4}")
_LATIN_NAME = re.compile(r"[A-Z][a-z]{1,11}(?: [A-Z][a-z]{1,11}){1,2}")
# Endings of words that start with a surname character but are no names: titles, places (苏州,
# 江苏省), organisations, grades, colours, money (余额).
_NOT_NAMES = (
    "老师",
    "同学",
    "家长",
    "先生",
    "女士",
    "小朋友",
    "学校",
    "公司",
    "中心",
    "课程",
    "会员",
    "班",
    "组",
    "州",
    "省",
    "市",
    "县",
    "区",
    "镇",
    "村",
    "路",
    "街",
    "部",
    "店",
    "馆",
    "院",
    "校",
    "局",
    "厂",
    "室",
    "队",
    "课",
    "卡",
    "级",
    "色",
    "额",
)
# Whole words of business data that start with a surname character and end like a given name.
_COMMON_WORDS = frozenset(
    "成功 安全 方法 文化 明天 高中 全部 和平 时间 马上 周末 钱包 牛奶 米饭 黄金 白金 游泳 武术 古筝 吉他 "
    "尤克里里 王者荣耀 东方明珠 江苏 江西 安徽 吉林 甘肃 宁夏 武汉 成都 沈阳 宁波 石家庄 桂林 "
    "常规 常用 关于 时尚 龙舟 安装 于是 和谐 高考 高清 万能 华为 小米 明星 文明 文学 文艺 史学 "
    "管理 管理员 全部 全站 简介 简单 方式 方便 付款 付费 金额 余额 时间 时长 成长 成长值 积分 "
    "田园 江湖 宁静 宋体 黑体 程序 包装 包邮 单号 单价 单位 申请".split()
)


def compact(text: str) -> str:
    return str(text).strip()


def is_certain(text: str) -> bool:
    """A Chinese name beyond reasonable doubt: 2-4 CJK characters after a known surname."""
    name = compact(text)
    if (
        not 2 <= len(name) <= 4
        or not _CJK_NAME.fullmatch(name)
        or name.endswith(_NOT_NAMES)
        or name in _COMMON_WORDS
    ):
        return False
    if name.startswith(COMPOUND_SURNAMES):
        return len(name) >= 3
    return name[0] in SURNAMES


def is_valid(text: str) -> bool:
    """The shape of a name: a Chinese name, or 2-3 capitalised words."""
    name = compact(text)
    return is_certain(name) or bool(_LATIN_NAME.fullmatch(name))


# Under a column name that says "name": one to three words in Latin script (MARY, SMITH,
# O'Brien, Jean-Luc, zhang wei in pinyin), or a CJK name of 2-4 characters whatever its first one.
_PLAUSIBLE = re.compile(
    r"[A-Za-z\u00c0-\u024f][A-Za-z\u00c0-\u024f'.\-]{0,24}(?: [A-Za-z\u00c0-\u024f][A-Za-z\u00c0-\u024f'.\-]{0,24}){0,2}"
    r"|[\u4e00-\u9fff]{1,4}(?:·[\u4e00-\u9fff]{1,5})?"
)


def is_plausible(text: str) -> bool:
    """The shape of a name when the column's name already says it holds names: also a single
    Latin-script or pinyin word in any case, a Chinese name with a rarer surname, and one CJK
    character (a surname or a given name stored in a column of its own: surname, given_name)."""
    name = compact(text)
    return is_valid(name) or (bool(_PLAUSIBLE.fullmatch(name)) and not name.endswith(_NOT_NAMES))


# Inside free text a name is believed only with context that says a person is meant: a word
# before it (联系人, 收货人, 已联系, 致电, 客服, 用户, 家长, 签收人, 快递员, 教练, Mr) or after it (先生, 女士, 同学, 家长,
# 反馈, 来电, 投诉), or a phone number right after it.
_BEFORE = (
    r"(?:联系人|收货人|收件人|寄件人|付款人|经办人|申请人|负责人|监护人|家长|学生|学员|客户|用户|会员|顾客|"
    r"客服|联系|致电|电话联系|告知|通知|转告|回复|提醒|姓名|户名|开户名|持卡人|收款人|签收人|代收人|本人|"
    r"快递员|派件员|配送员|骑手|司机|教练|Mr\.?|Ms\.?|Mrs\.?)[:：\s]?"
)
_AFTER = (
    r"(?:先生|女士|小姐|同学|家长|老师|您好|你好|推荐|介绍|反馈|来电|投诉|表示|要求|申请|本人|的(?:电话|手机)|电话|手机"
    r"|的(?:请假|作业|简历|报名|成绩|证件|照片|发票|退款|订单)|[:：\s]?1[3-9]\d{9})"
)
_IN_CONTEXT = re.compile(
    rf"{_BEFORE}(?P<a>[\u4e00-\u9fff]{{2,4}})|(?<![\u4e00-\u9fff])(?P<b>[\u4e00-\u9fff]{{2,4}}?)(?={_AFTER})"
)


def in_context(text: str) -> list[str]:
    """Chinese names inside free text where the words around them say a person is meant."""
    found = []
    for m in _IN_CONTEXT.finditer(str(text)):
        candidate = m.group("a") or m.group("b")
        # the longest prefix that is a name beyond doubt: 张伟反馈 -> 张伟, 已联系王芳同意 -> 王芳
        if m.group("b"):
            # before a context word, the whole run must be the name (订单退货申请 is no 单退货)
            if is_certain(candidate):
                found.append(candidate)
            continue
        for size in range(min(len(candidate), 4), 1, -1):
            if is_certain(candidate[:size]):
                found.append(candidate[:size])
                break
    return found


# Names of organisations: an invoice title or a payer may be a company's name rather than a person's.
_ORGANISATION_ENDINGS = (
    "有限公司",
    "公司",
    "集团",
    "股份",
    "工作室",
    "事务所",
    "商行",
    "合作社",
    "学校",
    "大学",
    "学院",
    "中学",
    "小学",
    "幼儿园",
    "医院",
    "银行",
    "协会",
    "委员会",
    "研究所",
    "中心",
    "厂",
    "店",
    "局",
)
_ORGANISATION_WORDS = re.compile(
    r"有限公司|有限责任|股份|集团|\b(?:Co\.?,? ?Ltd|Ltd|Inc|LLC|GmbH|Corp|Company|Limited)\b\.?", re.I
)


def is_organisation(text: str) -> bool:
    """The name of a company or institution (有限公司, 集团, 学校, Co., Ltd): never a person's.

    >>> is_organisation("深圳某某科技有限公司"), is_organisation("Acme Trading Co., Ltd"), is_organisation("张伟")
    (True, True, False)
    """
    name = compact(text)
    return len(name) >= 3 and (name.endswith(_ORGANISATION_ENDINGS) or bool(_ORGANISATION_WORDS.search(name)))


# A file name: a base name and an extension of a document or image people upload.
_FILE_NAME = re.compile(
    r"(?:.*[/\\])?(?P<base>[^/\\]{2,200})\.(?:pdf|docx?|xlsx?|pptx?|csv|txt|jpe?g|png|gif|bmp|heic|webp|zip|rar|7z"
    r"|mp3|mp4|mov|wav|amr)",
    re.I,
)
_FILE_PARTS = re.compile(r"[_\-\s.()（）【】\[\]+]+")


def in_file_name(text: str) -> dict[str, str]:
    """What a file name (``张伟_13812345678_成绩单.pdf``, ``报名表-王芳.docx``) says of a person:
    category -> the first such part, for a Chinese name standing as a part of its own (between
    separators, beside at least one other part) and a mobile number. Nothing for a text that is
    not a file name.

    >>> sorted(in_file_name("张伟_13812345678_成绩单.pdf").items())
    [('cn_mobile', '13812345678'), ('name', '张伟')]
    >>> in_file_name("成长报告_2024.pdf"), in_file_name("张伟")
    ({}, {})
    """
    m = _FILE_NAME.fullmatch(str(text).strip())
    if m is None:
        return {}
    parts = [p for p in _FILE_PARTS.split(m.group("base")) if p]
    found: dict[str, str] = {}
    for part in parts:
        if (
            "cn_mobile" not in found
            and len(part) == 11
            and part.isdigit()
            and re.fullmatch(r"1[3-9]\d{9}", part)
        ):
            found["cn_mobile"] = part
        elif "name" not in found and len(parts) >= 2 and len(part) <= 3 and is_certain(part):
            found["name"] = part
        elif "name" not in found and (names := in_context(part)):
            found["name"] = names[0]
    return found


def mask(text: str) -> str:
    name = compact(text)
    return name[:1] + "*" * max(len(name) - 1, 1)


# Whole values only: names are not searched inside free text.
finditer = whole_value(is_valid, compact)
find = find_with(finditer)
