"""What table and column names say about links: one normaliser for every naming convention.

`words` splits a name written in snake_case, camelCase, PascalCase, kebab-case, pinyin or Chinese
into lower-case words, each brought to one English form (plurals singular, pinyin and Chinese
synonyms translated): `createdUserId`, `created_user_id` and `CREATED_USER_ID` all give
`("created", "user", "id")`; `yonghu_id` and `用户ID` give `("user", "id")`. `table_stems` gives
the names a column may use for a table (`ums_member` -> member, `t_user`/`users`/`user_info` ->
user); `key_words` splits a column name into what it refers to and its key word (`member_id` ->
member + id); `is_role` says whether a column name names a person's role (`creator_id`, `fromId`,
`uid`). Names only: nothing here reads a value.

>>> words("createdUserId")
('created', 'user', 'id')
>>> words("学员编号")
('student', 'id')
>>> sorted(table_stems("tb_users"))
[('tb', 'user'), ('user',)]
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: pinyin and Chinese words of tables and columns, in their English form
SYNONYMS: dict[str, str] = {
    "yonghu": "user",
    "用户": "user",
    "huiyuan": "member",
    "会员": "member",
    "xuesheng": "student",
    "xueyuan": "student",
    "学生": "student",
    "学员": "student",
    "kehu": "customer",
    "guke": "customer",
    "客户": "customer",
    "顾客": "customer",
    "dingdan": "order",
    "订单": "order",
    "zhanghu": "account",
    "zhanghao": "account",
    "账户": "account",
    "账号": "account",
    "yuangong": "employee",
    "员工": "employee",
    "jiaoshi": "teacher",
    "laoshi": "teacher",
    "教师": "teacher",
    "老师": "teacher",
    "kecheng": "course",
    "课程": "course",
    "banji": "class",
    "班级": "class",
    "jiazhang": "guardian",
    "家长": "guardian",
    "chuangjianren": "creator",
    "创建人": "creator",
    "创建者": "creator",
    "编号": "id",
    "people": "person",
    "children": "child",
}

#: the words a key column ends with (`member_id`, `会员编号`)
ID_WORDS = frozenset({"id"})

#: words that are a table's namespace, not its subject: `t_user`, `tb_user`, `sys_user`
TABLE_PREFIXES = frozenset({"t", "tb", "tbl", "sys", "app", "biz", "wp", "dt", "ods", "dwd", "dim"})
#: words that qualify a table without changing what its rows are: `user_info`, `member_base`
TABLE_SUFFIXES = frozenset(
    {"info", "information", "data", "base", "basic", "tab", "table", "tbl", "t", "list"}
)

#: words naming a person's role: a column `<role>_id` (or `<role>`, `<role>_by`) of any table may
#: refer to the subject table (`creator_id`, `fromId`, `toUserId`, `buyer_id`, `author_id`)
ROLE_WORDS = frozenset(
    {
        "user",
        "member",
        "customer",
        "student",
        "person",
        "account",
        "creator",
        "owner",
        "buyer",
        "seller",
        "author",
        "sender",
        "receiver",
        "recipient",
        "from",
        "to",
        "payer",
        "payee",
        "publisher",
        "poster",
        "inviter",
        "invitee",
        "referrer",
        "follower",
        "friend",
        "learner",
        "guardian",
        "child",
    }
)
#: whole column names that stand for "the user's key" on their own
ROLE_NAMES = frozenset({("uid",), ("creator",), ("owner",), ("author",), ("buyer",), ("seller",)})

#: English nouns never taken for a module prefix (`user_info`, `user_log` do not make "user" one)
_NOUNS = frozenset(SYNONYMS.values()) | ROLE_WORDS

_ASCII_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_CJK = re.compile(r"[\u3400-\u9fff]+")
_CJK_WORDS = sorted((w for w in SYNONYMS if _CJK.fullmatch(w)), key=len, reverse=True)


def singular(word: str) -> str:
    """`users` -> user, `categories` -> category, `addresses` -> address; other words as they are.

    >>> [singular(w) for w in ("users", "categories", "addresses", "status", "ids")]
    ['user', 'category', 'address', 'status', 'ids']
    """
    if word in SYNONYMS:
        return SYNONYMS[word]
    if len(word) <= 3 or not word.isascii() or word == "ids":
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _split_cjk(run: str) -> list[str]:
    """Known Chinese words by longest match; other characters one by one."""
    out: list[str] = []
    i = 0
    while i < len(run):
        for w in _CJK_WORDS:
            if run.startswith(w, i):
                out.append(w)
                i += len(w)
                break
        else:
            out.append(run[i])
            i += 1
    return out


def _raw_words(name: str) -> list[str]:
    out: list[str] = []
    for part in re.split(r"[^0-9A-Za-z\u3400-\u9fff]+", name):
        pos = 0
        for m in _CJK.finditer(part):
            out += _ASCII_WORD.findall(part[pos : m.start()])
            out += _split_cjk(m.group())
            pos = m.end()
        out += _ASCII_WORD.findall(part[pos:])
    return [w.lower() for w in out if w]


def words(name: str) -> tuple[str, ...]:
    """The words of `name`, lower case, singular, pinyin and Chinese in English."""
    return tuple(singular(SYNONYMS.get(w, w)) for w in _raw_words(name))


def table_stems(name: str, module_prefixes: Iterable[str] = ()) -> set[tuple[str, ...]]:
    """The word sequences a column may use for table `name`: its words, without a namespace prefix
    (TABLE_PREFIXES, or one of `module_prefixes` such as mall's `ums`), without a qualifying suffix
    (`_info`, `_data`, ...), last word singular."""
    full = words(name)
    if not full:
        return set()
    prefixes = TABLE_PREFIXES | set(module_prefixes)
    variants = {full}
    if len(full) > 1 and full[0] in prefixes:
        variants.add(full[1:])
    for v in list(variants):
        if len(v) > 1 and v[-1] in TABLE_SUFFIXES:
            variants.add(v[:-1])
    return {v for v in variants if v}


def module_prefixes(table_names: Iterable[str]) -> set[str]:
    """First words (up to 4 letters) that at least three tables of a source share and that are not
    nouns of their own (mall's `ums_`, `oms_`, `pms_`; never `user_` of `user_info`, `user_log`)."""
    counts: dict[str, int] = {}
    names = list(table_names)
    whole = {words(n) for n in names}
    for n in names:
        w = words(n)
        if len(w) > 1:
            counts[w[0]] = counts.get(w[0], 0) + 1
    return {
        p
        for p, n in counts.items()
        if n >= 3 and len(p) <= 4 and p.isalpha() and p not in _NOUNS and (p,) not in whole
    }


def key_words(column: str) -> list[tuple[tuple[str, ...], str]]:
    """The ways `column` reads as "<what> <key>": [(what, key word)]. `member_id` -> [(("member",),
    "id")]; a fused `memberid` or `userid` splits too; `order_sn` -> [(("order",), "sn")] (any last
    word may be a key's name, checked against the referenced table's key)."""
    w = words(column)
    out: list[tuple[tuple[str, ...], str]] = []
    if len(w) > 1:
        out.append((w[:-1], w[-1]))
    if w and w[-1].endswith("id") and len(w[-1]) > 3 and w[-1] != "id":
        out.append(((*w[:-1], singular(w[-1][:-2])), "id"))
    return out


def role_of(column: str) -> tuple[str, ...] | None:
    """The role words when `column` names a person by role (`creator_id`, `fromId`, `toUserId`,
    `created_by`, `uid`), else None.

    >>> [role_of(c) for c in ("createdUserId", "from_id", "uid", "created_by", "product_id")]
    [('created', 'user'), ('from',), ('uid',), ('created', 'by'), None]
    """
    w = words(column)
    if w in ROLE_NAMES:
        return w
    if len(w) >= 2 and w[-1] == "by":
        return w
    for what, key in key_words(column):
        if key in ID_WORDS and what and what[-1] in ROLE_WORDS:
            return what
    return None
