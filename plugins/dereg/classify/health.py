"""Health information (健康信息, sensitive under PIPL Art. 28): illnesses, allergies, medication,
diagnoses, disabilities, written in Chinese or English in a note or a dedicated column.

The words are specific enough that one of them in a remark makes the remark health information
(孩子对花生过敏, has asthma); generic words that also describe a course or a product (健康, 医生,
care) are not in the list. `mask` never shows the remark, only the fact.

>>> find("孩子对花生过敏，有哮喘")
['过敏', '哮喘']
>>> mask("过敏")
'[health term]'
"""

from __future__ import annotations

import re

from dereg.classify.base import find_with, in_text

CATEGORY = "health"
LEVEL = "sensitive"
EMBEDDED = True

TERMS_ZH = (
    "过敏",
    "哮喘",
    "糖尿病",
    "癫痫",
    "心脏病",
    "先天性",
    "高血压",
    "抑郁症",
    "焦虑症",
    "自闭症",
    "孤独症",
    "多动症",
    "注意缺陷",
    "病史",
    "病历",
    "确诊",
    "诊断为",
    "住院",
    "手术",
    "服药",
    "用药",
    "残疾",
    "传染病",
    "乙肝",
    "结核",
    "过敏史",
    "发烧",
    "发热",
    "感冒",
    "肺炎",
    "骨折",
    "近视",
    "弱视",
    "听力障碍",
    "发育迟缓",
    "心理咨询",
    "心理治疗",
    "体检",
    "疫苗",
    "血型",
    "癌症",
    "白血病",
    "贫血",
    "湿疹",
    "鼻炎",
    # a clinic's diagnoses (issue 16, a dental practice's records): acute/chronic conditions, caries
    "急性",
    "慢性",
    "龋",
    "牙髓炎",
    "牙周炎",
    "牙龈炎",
    "龈炎",
    "根管治疗",
    "阻生",
)
TERMS_EN = (
    "allergy",
    "allergies",
    "allergic",
    "asthma",
    "diabetes",
    "diabetic",
    "epilepsy",
    "seizure",
    "adhd",
    "autism",
    "autistic",
    "diagnosed",
    "diagnosis",
    "medication",
    "hospitalized",
    "hospitalised",
    "disability",
    "disabled",
    "depression",
    "anxiety disorder",
    "blood type",
    "inhaler",
    "eczema",
)


def _english(term: str) -> str:
    # The first letter is matched before the word-boundary check, and case variants are spelt out
    # instead of (?i): both keep Python's fast literal-prefix search, which (?i) or a leading
    # assertion would switch off (the scanner pays for this pattern at every character).
    first, rest = re.escape(term[0]), re.escape(term[1:])
    return f"{first}(?<![A-Za-z]{first}){rest}(?![A-Za-z])"


# Longest first (a term before the terms it starts with); alphabetical among equals, so the pattern
# is the same text in every process: a worker finds the compiled search its parent handed over
# (`native.preload`) under the patterns' text, and the cache of compiled searches keys on it.
_VARIANTS = sorted({v for t in TERMS_EN for v in (t, t.capitalize(), t.upper())}, key=lambda v: (-len(v), v))
_FIRST = "".join(sorted({t[0] for t in (*TERMS_ZH, *_VARIANTS)}))
# The lookahead on the terms' first characters lets the scanner's combined pattern skip the ~150
# alternatives with one test at each position (a third of a full scan's time without it).
PATTERN = re.compile(
    f"(?=[{re.escape(_FIRST)}])(?:"
    + "|".join(
        [re.escape(t) for t in sorted(TERMS_ZH, key=len, reverse=True)] + [_english(t) for t in _VARIANTS]
    )
    + ")"
)


def compact(text: str) -> str:
    return str(text).strip()


def is_valid(text: str) -> bool:
    """True when `text` mentions at least one health term."""
    return PATTERN.search(str(text)) is not None


def mask(text: str) -> str:
    return "[health term]"


# Every term of the pattern counts: the pattern is the list of terms.
finditer = in_text(PATTERN)
find = find_with(finditer)
