"""The classification engine: read each table, run the detectors and the name hints, conclude per column.

`classify_source` reads a sample spread over each table (or, with `full=True`, every value) and
yields one ColumnFinding for every column, then counts the minors among the data subjects and
raises their data to sensitive; a table that cannot be read is reported with its reason and the
rest is still classified. `full_scan_hits` reads every value of every table and counts values that
still hold a valid identifier (the post-erasure check). Raw values stay inside this module and the
scanner: findings carry counts, reasons and masked examples only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from dereg.classify import cn_resident_id, email, im_account, landline, names, parallel, person_name
from dereg.classify.scanner import NOT_PERSONAL, digit_fields, personal_spans, span_masks, spans, stream_hits
from dereg.classify.taxonomy import level_of
from dereg.dialects import dialect_for
from dereg.errors import SourceError
from dereg.model import ClassificationResult, ColumnFinding, SourceInventory, TableInfo
from dereg.redact import database_error, is_database_error

log = logging.getLogger(__name__)

MINOR_AGE = 14  # PIPL Art. 28: personal information of a child under 14 is sensitive
DEFAULT_SAMPLE_SIZE = 2000
STRUCTURED_SHARE = 0.30  # share of non-empty sampled values that must be valid hits
HINTED_SHARE = 0.10  # the same when the column's name agrees with the values
STRONG_SHARE = 0.02  # the same for kinds that random numbers almost never pass (STRONG_CHECKS)
STRONG_CHECKS = frozenset({"cn_resident_id", "email"})
FREE_TEXT_LENGTH = 40  # mean length above which a column counts as free text
SHAPE_SHARE = {"name": 0.9, "address": 0.8, "gender": 0.95, "vehicle": 0.9}  # values alone, no name hint
HINTED_SHAPE_SHARE = 0.5  # a hinted shape category needs this share of fitting values
MAX_SAMPLE_CHARS = 200_000  # in a sample, a longer cell is scanned in its first characters only
SCAN_BATCH = 2000
BLOCK_CHARS = 4 << 20  # full scans run the scanner over blocks of about this many characters
_EXAMPLES = 3  # masked examples kept per column and kind in a full scan
_TRIED_CAP = 4096  # raw values remembered per column and kind while looking for examples
_SEEN_CAP = 4096  # texts of a sampled column whose verdicts are remembered ...
_SEEN_LENGTH = 200  # ... when no longer than this

DESCRIPTIONS = {
    "cn_resident_id": "resident ID numbers",
    "cn_mobile": "mobile numbers",
    "phone": "telephone numbers",
    "email": "e-mail addresses",
    "bank_card": "bank card numbers",
    "passport": "passport or travel permit numbers",
    "ip_address": "IP addresses",
    "im_account": "WeChat or QQ accounts",
    "health": "health terms",
    "organisation_id": "unified social credit codes",
}
# kinds whose values prove or disprove them: a name hint alone never outweighs values that contradict it
_PROVABLE = frozenset({"cn_resident_id", "cn_mobile", "phone", "email", "bank_card", "ip_address"})
# kinds whose digits a document's number may have by chance (an invoice code 0xx-xxxxxxxx)
_DOCUMENT_LOOKALIKES = frozenset({"cn_mobile", "phone", "bank_card"})
_TEXT_TYPE = re.compile(r"CHAR|TEXT|CLOB|STRING|JSON|ENUM|NULL|UUID", re.I)
_FREE_TEXT_TYPE = re.compile(r"TEXT|CLOB|JSON", re.I)
_BARE_TEXT = re.compile(r"\s*TEXT\s*", re.I)
_SKIP_IN_FULL_SCAN = re.compile(
    r"^(BOOL|DATE|TIME|FLOAT|REAL|DOUBLE|NUMERIC\(\d+, *[1-9]|DECIMAL\(\d+, *[1-9])", re.I
)
# 1- to 4-byte integers hold at most 10 digits: never a resident ID, mobile or card number, so a
# full scan counts their values but does not read them (an attendance log of ids is not read at all)
_TOO_SHORT_FOR_IDS = re.compile(
    r"^(TINYINT|SMALLINT|MEDIUMINT|INTEGER|INT|INT2|INT4|SERIAL|SMALLSERIAL)\b", re.I
)
_BINARY_TYPE = re.compile(r"BLOB|BYTEA|BINARY|IMAGE", re.I)
_GENDER_WORDS = frozenset({"男", "女", "男性", "女性", "male", "female"})
# a value written as a sentence: CJK text with punctuation, or CJK words with spaces between
_PROSE = re.compile(
    r"[\u4e00-\u9fff][，。！？；、：,!?;]|[，。！？；、：][\u4e00-\u9fff]|[\u4e00-\u9fff]\s+\S"
)
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"RIFF")
# a path or URL of an image file: /upload/child/2026/1234.jpg, https://img.example.cn/face/1.png?x=1
_IMAGE_REF = re.compile(r"\.(?:jpe?g|png|gif|bmp|webp|heic|tiff?)(?:[?#][^\s]*)?$", re.I)
# a mobile number with its middle digits masked (138****1234): with the name and address beside
# it, still a way to the person (courier labels, order lists)
_MASKED_MOBILE = re.compile(r"1[3-9]\d(?:\*{4}|x{4}|X{4})\d{4}")
# a person's relation to another, as a family or a school records it
_KINSHIP_WORDS = frozenset(
    "父亲 母亲 爸爸 妈妈 父 母 爷爷 奶奶 外公 外婆 姥姥 姥爷 祖父 祖母 外祖父 外祖母 哥哥 姐姐 弟弟 妹妹 "
    "叔叔 阿姨 伯伯 姑姑 舅舅 姨妈 配偶 丈夫 妻子 儿子 女儿 子女 亲属 保姆 本人 "
    "father mother parent grandfather grandmother grandparent brother sister uncle aunt spouse "
    "husband wife son daughter guardian nanny self".split()
)
_DIGIT = re.compile(r"\d")
BODY_TEMPERATURE = (34.0, 43.0)  # °C: every value of a body temperature column lies in it
_DISTINCT_CAP = 64  # distinct values remembered per column and kind (to tell repeated from varied)
_HINTED_ONLY = frozenset({"device_id"})  # whole-value shapes believed only under their column name
_PLATFORM_ID_LENGTHS = frozenset({16, 28})  # an Alipay user id, a WeChat openid or unionid
PLATFORM_ID_SHARE = 0.9  # share of values wholly platform ids that makes a column of them
_CONTACT_KINDS = frozenset({"cn_mobile", "phone", "email"})  # how an organisation is reached, too
ORGANISATION_CONTACT_MAX = 3  # at most this many distinct contacts ...
ORGANISATION_CONTACT_REPEAT = 3  # ... each in this many values on average: the organisation's own
FEW_NAMES = 5  # fewer distinct name-shaped values than this, in a table with nothing else of a person


def _detector(category: str):
    from dereg.classify import ALL_DETECTORS

    return next((d for d in ALL_DETECTORS if d.CATEGORY == category), None)


def _whole_value_detectors(hinted: Iterable[str] = ()) -> tuple:
    """Detectors run on whole values: those for kinds known only by a whole value's shape (names,
    addresses, dates), plus the detectors of the categories the column's name suggests (a bare QQ
    number is believed under a column called qq)."""
    from dereg.classify import ALL_DETECTORS, BY_CATEGORY

    # a device id's shape is any random key: its detector runs only under a device column's name
    found = [d for d in ALL_DETECTORS if not getattr(d, "EMBEDDED", True) and d.CATEGORY not in _HINTED_ONLY]
    for cat in hinted:
        if cat == "phone":
            found += [BY_CATEGORY["phone"], BY_CATEGORY["cn_mobile"]]
        elif cat in BY_CATEGORY and BY_CATEGORY[cat] not in found:
            found.append(BY_CATEGORY[cat])
    return tuple(dict.fromkeys(found))


def mask(category: str, value: str) -> str:
    detector = _detector(category)
    if detector is None:
        return value[:1] + "*" * max(len(value) - 1, 0)
    return detector.mask(value)


# --- single strings ------------------------------------------------------------------------------


def find_in_text(text: str) -> list[tuple[str, str]]:
    """(category, masked value) of every valid personal identifier in `text`, by position."""
    return [(cat, mask(cat, value)) for cat, _, _, value in personal_spans(str(text))]


def has_identifier(text: str) -> bool:
    """True when `text` holds at least one valid personal identifier."""
    return bool(personal_spans(str(text)))


# --- one column's values ------------------------------------------------------------------------


@dataclass
class _ColumnStats:
    nonempty: int = 0
    text_values: int = 0
    total_length: int = 0
    truncated: int = 0
    binary_values: int = 0
    image_values: int = 0
    undecodable: int = 0
    json_values: int = 0
    date_like: int = 0
    gender_like: int = 0
    containing: Counter = field(default_factory=Counter)  # category -> values holding a hit
    whole: Counter = field(default_factory=Counter)  # category -> values wholly of that shape
    json_found: Counter = field(default_factory=Counter)  # category -> documents with it under a key
    certain: Counter = field(default_factory=Counter)  # category -> values of it beyond doubt
    any_hit: int = 0
    context_names: int = 0  # values naming a person inside free text (联系张伟, 王芳反馈)
    examples: dict[str, list[str]] = field(default_factory=dict)
    hinted: tuple[str, ...] = ()
    generic_name: bool = False  # called just `name`: its shape is judged strictly
    prose: int = 0  # values written as sentences (CJK with punctuation or spaces)
    plausible_names: int = 0  # of a column called just `name`: values with the loose shape of one
    organisations: int = 0  # values naming a company or institution (an invoice title, a payer)
    file_found: Counter = field(default_factory=Counter)  # category -> file names naming a person
    # contact kind -> distinct values found and in how many values each (capped): the same
    # hotline in every row of a course table is the organisation's, not a customer's
    contact_values: dict[str, Counter] = field(default_factory=dict)
    name_values: set = field(default_factory=set)  # distinct values with a name's shape (capped)
    own_contacts: frozenset = frozenset()  # (category, value) of the organisation's own contacts
    platform_ids: int = 0  # values that are wholly a WeChat openid/unionid or an Alipay user id
    own_contact_values: int = 0  # values holding one of them (not counted as personal)
    image_refs: int = 0  # values that are a path or URL of an image file
    masked_mobiles: int = 0  # values that are wholly a masked mobile number (138****1234)
    kin_like: int = 0  # values that are kinship words (父亲, 外婆, mother)
    with_digits: int = 0  # short text values (a postcode) with a digit among their first 8 characters
    typeless_text: bool = False  # read from SQLite, where TEXT is every string column's type
    numbers: int = 0  # values that are numbers (a measurement, an amount, a code)
    number_range: tuple = ()  # (lowest, highest) of them

    def __post_init__(self) -> None:
        self._whole_detectors = _whole_value_detectors(self.hinted)
        self._whole_checks = self._checks(self._whole_detectors)
        self._date_checks = tuple(c for c in self._whole_checks if c[0] == "birth_date")
        self._face_checks = tuple(c for c in self._whole_checks if c[0] == "biometric_face")
        # a run of plain digits (an id, an amount, an ID number) is not asked of the detectors
        # that never take one (a name, an address)
        self._digit_checks = tuple(c for c in self._whole_checks if getattr(c[3], "PLAIN_DIGITS", True))
        # under a phone or mobile column's name, numbers abroad in international form are phones
        self._phones_abroad = bool({"phone", "cn_mobile"} & set(self.hinted))
        # what the detectors said of a text met before in this column (a sample repeats its
        # genders, statuses, schools and names): their verdicts depend on the text alone
        self._whole_seen: dict[str, tuple] = {}
        self._spans_seen: dict[str, list] = {}
        # text -> `spans` mask of the detectors that may find something in it (`span_masks`)
        self.span_masks: dict[str, int] = {}

    def example(self, category: str, masked: str) -> None:
        examples = self.examples.setdefault(category, [])
        if len(examples) < 3 and masked not in examples:
            examples.append(masked)

    def add(self, value) -> None:
        is_text = isinstance(value, str)
        if not is_text and type(value) is not int:  # the common cases are none of these kinds
            if value is None:
                return
            if isinstance(value, bytes | bytearray | memoryview):
                self._add_binary(bytes(value))
                return
            if isinstance(value, date):  # date and datetime
                self.nonempty += 1
                self.date_like += 1
                self._add_whole(value, self._date_checks)
                return
            if isinstance(value, bool | float | Decimal):
                self.nonempty += 1
                if not isinstance(value, bool):
                    self._add_number(float(value))
                return
            if isinstance(value, dict | list):  # a JSON column the driver already decoded
                self.nonempty += 1
                self.json_values += 1
                text = json.dumps(value, ensure_ascii=False)
                self._add_json(value)
                self._add_spans(text)
                return
        text = str(value).strip()
        if not text:
            return
        self.nonempty += 1
        size = len(text)
        if size > MAX_SAMPLE_CHARS:
            self.truncated += 1
            text = text[:MAX_SAMPLE_CHARS]
            size = MAX_SAMPLE_CHARS
        if is_text:
            self.text_values += 1
            self.total_length += size
            if "." in text and size <= 500 and _IMAGE_REF.search(text):
                self.image_refs += 1
            if size == 11 and text[3] in "*xX" and _MASKED_MOBILE.fullmatch(text):
                self.masked_mobiles += 1
                self.example("cn_mobile", text)
            if size <= 12:
                # kinship and gender words are short (lower case is never shorter than a text)
                lowered = text.lower()
                if lowered in _KINSHIP_WORDS:
                    self.kin_like += 1
                if lowered in _GENDER_WORDS:
                    self.gender_like += 1
                if _DIGIT.search(text, 0, 8):
                    self.with_digits += 1
            if 8 <= size <= 26 and _as_date(text) is not None:  # the lengths _as_date reads
                self.date_like += 1
            if text[0] in "{[":
                try:
                    document = json.loads(text)
                except ValueError:
                    document = None
                if isinstance(document, dict | list):
                    self.json_values += 1
                    self._add_json(document)
            if size > 4 and not text.isascii():
                if size >= 6 and _PROSE.search(text):
                    self.prose += 1
                found = person_name.in_context(text[:2000])
                if found:
                    self.context_names += 1
                    self.example("name", person_name.mask(found[0]))
            if self.generic_name and person_name.is_plausible(text):
                self.plausible_names += 1
            if size <= 200:
                if person_name.is_organisation(text):
                    self.organisations += 1
                if "." in text:
                    for cat, found_in_file in person_name.in_file_name(text).items():
                        self.file_found[cat] += 1
                        self.example(cat, mask(cat, found_in_file))
                self._add_whole(text, self._digit_checks if _plain_digits(text) else self._whole_checks)
                if self._phones_abroad and text[0] == "+" and landline.is_international(text):
                    self.whole["phone"] += 1
                    self.example("phone", text[:3] + "*" * (size - 5) + text[-2:])
            elif text.startswith(("data:image/", "/9j/", "iVBOR")):
                self._add_whole(text, self._face_checks)
        elif isinstance(value, int):
            self._add_number(float(value))
            # a gender code, a QQ number under its name
            self._add_whole(text, self._digit_checks if _plain_digits(text) else self._whole_checks)
        if size in _PLATFORM_ID_LENGTHS and im_account.is_platform_id(text):
            self.platform_ids += 1
            self.example("im_account", im_account.mask(text))
        self._add_spans(text)

    def _add_whole(self, value, checks) -> None:
        remembered = (checks is self._whole_checks or checks is self._digit_checks) and isinstance(value, str)
        verdicts = self._whole_seen.get(value) if remembered else None
        if verdicts is None:
            verdicts = self._whole_verdicts(value, checks)
            if remembered and len(self._whole_seen) < _SEEN_CAP:
                self._whole_seen[value] = verdicts
        for cat, certain, detector in verdicts:
            self.whole[cat] += 1
            if cat == "name" and len(self.name_values) < _DISTINCT_CAP:
                self.name_values.add(value)
            if certain:
                self.certain[cat] += 1
            if cat == "biometric_face":
                self.image_values += 1
            if len(self.examples.get(cat, ())) < 3:  # masked only while examples are wanted
                self.example(cat, detector.mask(value))

    def _checks(self, detectors) -> tuple:
        """(category, check, is_certain or None, detector) of each of `detectors`, in their order,
        worked out once for the column: the check is the detector's is_plausible under a name
        that says so (a looser shape is enough: MARY as a first_name), else its is_valid."""
        checks = []
        for detector in detectors:
            cat = detector.CATEGORY
            loose = cat in self.hinted and not (cat == "name" and self.generic_name)
            plausible = getattr(detector, "is_plausible", None) if loose else None
            check = plausible if plausible is not None else detector.is_valid
            checks.append((cat, check, getattr(detector, "is_certain", None), detector))
        return tuple(checks)

    def _whole_verdicts(self, value, checks) -> tuple:
        """(category, beyond doubt, detector) of each of `checks` (`_checks`) that takes `value`
        whole, in their order."""
        verdicts = []
        for cat, check, certain, detector in checks:
            try:
                if not check(value):
                    continue
            except Exception:  # noqa: BLE001 - a detector never stops a scan; odd input is simply not a match
                continue
            verdicts.append((cat, certain is None or bool(certain(value)), detector))
        return tuple(verdicts)

    def _add_spans(self, text: str) -> None:
        found = self._spans_seen.get(text)
        if found is None:
            found = spans(text, mask=self.span_masks.get(text, -1))
            if len(self._spans_seen) < _SEEN_CAP and len(text) <= _SEEN_LENGTH:
                self._spans_seen[text] = found
        if found and self.own_contacts:
            kept = [s for s in found if (s[0], s[3]) not in self.own_contacts]
            if len(kept) < len(found):
                self.own_contact_values += 1
            found = kept
        if not found:
            return
        # each kind once, in text order (not a set's: the same in every process); one hit, the
        # common case (an ID, a mobile number), without a generator or a dict
        kinds = (found[0][0],) if len(found) == 1 else tuple(dict.fromkeys(s[0] for s in found))
        if any(cat not in NOT_PERSONAL for cat in kinds):
            self.any_hit += 1
        for cat in kinds:
            self.containing[cat] += 1
        for cat, _, _, raw in found:
            if len(self.examples.get(cat, ())) < 3:  # masked only while examples are wanted
                self.example(cat, mask(cat, raw))
            if cat in _CONTACT_KINDS:
                seen = self.contact_values.get(cat)
                if seen is None:  # (setdefault would build a Counter for every value)
                    seen = self.contact_values[cat] = Counter()
                if raw in seen or len(seen) < _DISTINCT_CAP:
                    seen[raw] += 1

    def _add_number(self, number: float) -> None:
        self.numbers += 1
        if not self.number_range:
            self.number_range = (number, number)
        elif not self.number_range[0] <= number <= self.number_range[1]:
            self.number_range = (min(self.number_range[0], number), max(self.number_range[1], number))

    def _add_binary(self, blob: bytes) -> None:
        if not blob:
            return
        self.nonempty += 1
        self.binary_values += 1
        if blob.startswith(_IMAGE_MAGIC) or _safe_valid(_detector("biometric_face"), blob):
            self.image_values += 1
            return
        try:
            text = blob[:MAX_SAMPLE_CHARS].decode("utf-8")
        except UnicodeDecodeError:
            self.undecodable += 1  # binary junk: nothing a text detector can read
            return
        self._add_spans(text)

    def _add_json(self, document) -> None:
        found: dict[str, None] = {}  # in the document's order, not a set's: the same in every process
        for key, leaf in _json_leaves(document):
            if not isinstance(leaf, str | int) or isinstance(leaf, bool):
                continue
            text = str(leaf).strip()
            for cat in names.hints(key):
                detector = _detector(cat)
                if cat in _PROVABLE:
                    continue  # identifiers are found by their values anywhere in the document
                if detector is None or _safe_valid(detector, text):
                    found[cat] = None
                    if detector is not None:
                        self.example(cat, detector.mask(text))
        for cat in found:
            self.json_found[cat] += 1

    @property
    def mean_length(self) -> float:
        return self.total_length / self.text_values if self.text_values else 0.0


def _plain_digits(text: str) -> bool:
    return text.isdigit() and text.isascii()


def _safe_valid(detector, value) -> bool:
    if detector is None:
        return False
    try:
        return bool(detector.is_valid(value))
    except Exception:  # noqa: BLE001 - a detector never stops a scan; odd input is simply not a match
        return False


def _json_leaves(document, key: str = "", depth: int = 0) -> Iterator[tuple[str, object]]:
    if depth > 20:
        return
    if isinstance(document, dict):
        for k, v in document.items():
            yield from _json_leaves(v, str(k), depth + 1)
    elif isinstance(document, list):
        for v in document[:1000]:
            yield from _json_leaves(v, key, depth + 1)
    else:
        yield key, document


def _as_date(value) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and 8 <= len(value.strip()) <= 26 and value[:4].isdigit():
        try:
            return datetime.fromisoformat(value.strip().replace("/", "-")).date()
        except ValueError:
            return None
    return None


def _pct(part: int, whole: int) -> str:
    return f"{round(100 * part / whole)}%" if whole else "0%"


def _threshold(category: str, hinted: list[str]) -> float:
    """Share of values that must hold `category` for a structured column to be personal. Checks
    that chance passes rarely (a resident ID's date, region and check digit; an e-mail's shape) need
    only a few values; a Luhn digit or a mobile's shape is passed by many order numbers."""
    if category in STRONG_CHECKS:
        return STRONG_SHARE
    return HINTED_SHARE if category in hinted else STRUCTURED_SHARE


def _free_text_type(column_type: str | None, stats: _ColumnStats) -> bool:
    """The column's type says free text (TEXT, CLOB, JSON). In SQLite a bare TEXT says nothing: it
    is what every string column is declared as (a store's telephone, a setting's value), so there
    the values' length, sentences or a remark's name decide."""
    if not _FREE_TEXT_TYPE.search(column_type or ""):
        return False
    return not (stats.typeless_text and _BARE_TEXT.fullmatch(column_type or ""))


def _is_free_text(column_type: str | None, stats: _ColumnStats, column: str = "") -> bool:
    n = stats.nonempty
    return (
        _free_text_type(column_type, stats)
        or names.remark(column)
        or stats.mean_length > FREE_TEXT_LENGTH
        or stats.json_values >= 0.5 * n
        or (stats.prose >= 0.3 * n and stats.mean_length > 8)
    )


def _conclude(table: str, column: str, column_type: str, stats: _ColumnStats) -> ColumnFinding:
    hinted = names.hints(column)
    hint_text = f"name hint {column}"
    n = stats.nonempty
    if n == 0:
        if hinted:
            # an empty column holds nobody's data: what its name suggests is reported, not concluded
            suggests = ", ".join(hinted)
            return _finding(
                table, column, [], 0, 0, [], [f"empty, name suggests {suggests}; no non-empty values read"]
            )
        return _finding(table, column, [], 0, 0, [], ["no non-empty values read; name says nothing"])

    free_text = _is_free_text(column_type, stats, column)
    categories: list[str] = []
    reasons: list[str] = []
    organisation = stats.containing.get("organisation_id", 0)
    if organisation and organisation >= 0.5 * n:
        reasons.append(
            f"{_pct(organisation, n)} of {n} values are unified social credit codes (organisations)"
        )

    # Values first: validated identifiers decide, whatever the column is called.
    for cat, containing in sorted(stats.containing.items(), key=lambda kv: -kv[1]):
        if cat in NOT_PERSONAL:
            continue
        description = DESCRIPTIONS.get(cat, cat)
        if free_text:
            categories.append(cat)
            reasons.append(f"free text: {containing} of {n} values contain valid {description}")
        elif containing / n >= _threshold(cat, hinted) and containing >= min(3, n):
            categories.append(cat)
            reasons.append(
                f"{_pct(containing, n)} of {n} values are valid {description}"
                + (f"; {hint_text}" if cat in hinted else "")
            )
    if names.document_number(column):
        # an invoice code or an order number may have a telephone's or card's digits: it numbers
        # a document (resident IDs and e-mails, checked beyond chance, still count)
        dropped = [c for c in categories if c in _DOCUMENT_LOOKALIKES]
        if dropped:
            categories = [c for c in categories if c not in dropped]
            reasons = [r for r in reasons if not any(DESCRIPTIONS.get(c, c) in r for c in dropped)]
            reasons.append(
                f"name {column} says a document's number: {', '.join(dropped)} shapes in it are not counted"
            )
    if (
        "cn_mobile" not in categories
        and {"cn_mobile", "phone"} & set(hinted)
        and stats.masked_mobiles >= HINTED_SHAPE_SHARE * n
    ):
        categories.append("cn_mobile")
        reasons.append(
            f"{hint_text}; {_pct(stats.masked_mobiles, n)} of {n} values are masked mobile numbers "
            "(138****1234): with the name and address beside them they still lead to the person"
        )
    for cat, documents in stats.json_found.items():
        if cat not in categories:
            categories.append(cat)
            reasons.append(f"JSON: {documents} of {n} documents hold {cat} under a key that names it")
    if "name" not in categories and stats.context_names and (free_text or stats.context_names >= 2):
        categories.append("name")
        reasons.append(f"free text: {stats.context_names} of {n} values name a person in context")
    if "im_account" not in categories and stats.platform_ids >= PLATFORM_ID_SHARE * n:
        categories.append("im_account")
        reasons.append(
            f"{_pct(stats.platform_ids, n)} of {n} values are WeChat openids/unionids or Alipay user ids"
        )
    for cat, files in stats.file_found.items():
        if cat not in categories and (free_text or files >= 2):
            categories.append(cat)
            reasons.append(f"{files} of {n} values are file names that hold a person's {cat}")
    matches = (
        max(stats.any_hit, stats.context_names, stats.platform_ids, *stats.file_found.values())
        if categories
        else 0
    )

    generic_name = names.is_generic_name(column) and "name" in hinted
    if generic_name:
        # decided with the table: a person's name only beside their number or address
        hinted = [c for c in hinted if c != "name"]
        reasons.append(f"{hint_text} says nothing of whose name: a person's only in a record about a person")

    # Shapes: values that are wholly a name, an address, a gender.
    for cat, fitting in stats.whole.items():
        if cat in categories or cat in NOT_PERSONAL or (generic_name and cat == "name"):
            continue
        share = fitting / n
        if cat in hinted and share >= HINTED_SHAPE_SHARE:
            categories.append(cat)
            reasons.append(f"{hint_text}; {_pct(fitting, n)} of {n} values have the shape of {cat}")
            matches = max(matches, fitting)
        elif (
            cat == "name"
            and cat in hinted
            and stats.organisations
            and fitting >= min(3, n)
            and fitting / max(n - stats.organisations, 1) >= HINTED_SHAPE_SHARE
        ):
            # an invoice title or payer: companies' names beside people's; the people's count
            categories.append(cat)
            reasons.append(
                f"{hint_text}; {stats.organisations} of {n} values name a company or institution, "
                f"and {fitting} of the other {n - stats.organisations} have the shape of a person's name"
            )
            matches = max(matches, fitting)
        elif (
            cat == "name"
            and stats.organisations
            and stats.certain.get(cat, 0) >= min(3, n)
            and stats.certain.get(cat, 0) / max(n - stats.organisations, 1) >= SHAPE_SHARE[cat]
            and stats.text_values >= 0.9 * n
        ):
            # no name hint (a `title`): companies' names beside people's, the people's count
            categories.append(cat)
            reasons.append(
                f"{stats.organisations} of {n} values name a company or institution, and "
                f"{stats.certain.get(cat, 0)} of the other {n - stats.organisations} are people's names"
            )
            matches = max(matches, fitting)
        elif (
            cat in SHAPE_SHARE
            and stats.certain.get(cat, 0) / n >= SHAPE_SHARE[cat]
            and stats.text_values >= 0.9 * n
        ):
            categories.append(cat)
            reasons.append(f"{_pct(fitting, n)} of {n} values have the shape of {cat}; name says nothing")
            matches = max(matches, fitting)

    # Then name hints, for what values cannot prove, unless the values contradict them.
    mostly_identifiers = stats.any_hit >= 0.5 * n or organisation >= 0.5 * n
    for cat in hinted:
        if cat in categories:
            continue
        if cat in _PROVABLE and _detector(cat) is not None:
            if not categories:
                reasons.append(
                    f"{hint_text} contradicted: {_pct(stats.containing.get(cat, 0), n)} of {n} "
                    f"values are valid {DESCRIPTIONS[cat]}"
                )
            continue
        if cat == "phone" and "cn_mobile" in categories:
            continue  # a mobile number is the more precise answer
        if mostly_identifiers:
            continue  # the values are identifiers of another kind
        # health: the detector knows specific terms, a patient's complaint is in any words
        if cat in stats.whole or (_detector(cat) is not None and cat not in ("biometric_face", "health")):
            # a detector for this shape exists and too few values fit it
            reasons.append(
                f"{hint_text} contradicted: only {_pct(stats.whole.get(cat, 0), n)} of {n} values "
                f"have the shape of {cat}"
            )
            continue
        textual = stats.text_values >= 0.5 * n
        fits = {
            "birth_date": stats.date_like >= 0.5 * n,
            "gender": stats.text_values == 0 or stats.mean_length <= 8,
            "name": textual and stats.mean_length <= 40,
            # images, or binary templates (a face's or fingerprint's features); paths of image
            # files only in a table about a person (`_person_table_images`)
            "biometric_face": stats.image_values + stats.undecodable >= 0.5 * n,
            "family": stats.kin_like >= 0.5 * n,
        }.get(cat, textual)
        if fits:
            categories.append(cat)
            reasons.append(f"{hint_text}; {n} values fit {cat}")
            matches = max(matches, n)
        else:
            reasons.append(f"{hint_text} suggests {cat} but the {n} values do not fit")

    if "gender" not in categories and stats.text_values and stats.gender_like >= 0.9 * n:
        categories.append("gender")
        reasons.append(f"{_pct(stats.gender_like, n)} of {n} values are gender words")
    if stats.own_contact_values:
        reasons.append(
            f"{stats.own_contact_values} values hold the organisation's own contacts (the manifest's), "
            "not counted as personal"
        )
    if stats.undecodable:
        reasons.append(f"{stats.undecodable} binary values are not text and were not scanned")
    if stats.truncated:
        reasons.append(
            f"{stats.truncated} values longer than {MAX_SAMPLE_CHARS:,} characters scanned in part"
        )
    if not reasons:
        reasons.append(f"no valid identifiers in {n} values; name says nothing")

    examples = [m for cat in categories for m in stats.examples.get(cat, [])]
    finding = _finding(table, column, categories, n, matches, examples[:3], reasons)
    finding.type = column_type or ""
    return finding


def _finding(
    table: str,
    column: str,
    categories: list[str],
    checked: int,
    matches: int,
    examples: list[str],
    reasons: list[str],
) -> ColumnFinding:
    return ColumnFinding(
        table=table,
        column=column,
        categories=categories,
        level=level_of(categories),
        values_checked=checked,
        matches=matches,
        masked_examples=examples,
        reason="; ".join(reasons),
    )


def _person_table_images(findings: list[ColumnFinding], stats: dict[str, _ColumnStats]) -> None:
    """Images in a table that also holds a person's name or identifiers are biometrics; so are
    paths or URLs of image files under a photo's or face's name (c_photo, FACE_IMG_URL) in a table
    about a person (a name, a number, a CUST_ID): they lead to the person's picture. A product's
    photo is in no such table."""
    personal = any(f.personal and "biometric_face" not in f.categories for f in findings)
    about_person = personal or any(names.person_reference(f.column) for f in findings)
    for f in findings:
        s = stats.get(f.column)
        if (
            about_person
            and s is not None
            and not f.personal
            and s.image_refs >= 0.5 * s.nonempty > 0
            and "biometric_face" in names.hints(f.column)
        ):
            f.categories = ["biometric_face"]
            f.level = level_of(f.categories)
            f.matches = s.image_refs
            f.reason = (
                f"name hint {f.column}; {s.image_refs} of {s.nonempty} values are paths or URLs of image "
                "files, in a table about a person (a photo of them)"
            )
            continue
        if not personal or s is None or f.personal or not s.image_values:
            continue
        if s.image_values >= 0.5 * s.nonempty:
            f.categories = ["biometric_face"]
            f.level = level_of(f.categories)
            f.matches = s.image_values
            f.reason = (
                f"{s.image_values} of {s.nonempty} values are images, in a table that holds people's "
                "personal information (face photos count as biometrics)"
            )


def _role_addresses(f: ColumnFinding, s: _ColumnStats) -> bool:
    """Every e-mail address found in the column (all remembered: fewer than the cap) is a role's."""
    seen = s.contact_values.get("email")
    return (
        f.categories == ["email"]
        and bool(seen)
        and len(seen) < _DISTINCT_CAP
        and all(email.is_role_address(a) for a in seen)
    )


def _names_a_person(s: _ColumnStats, column: str) -> bool:
    """Half the values of a column whose name says name have the shape of a person's name."""
    if not s.nonempty or "name" not in names.hints(column):
        return False
    fitting = s.plausible_names if s.generic_name else s.whole.get("name", 0)
    return fitting >= HINTED_SHAPE_SHARE * s.nonempty


# what a record about an organisation may hold of its own: a switchboard, an address, an e-mail
_ORGANISATION_KINDS = frozenset({"phone", "email", "address"})


def _organisation_named(findings: list[ColumnFinding], stats: dict[str, _ColumnStats]) -> str | None:
    """The column naming the organisation a table's records are about (company_name, 企业名称,
    whose values are not people's names), when every personal finding of the table is a
    telephone, an address or an e-mail: a CRM's accounts, a supplier list. None otherwise; a
    mobile number, a person's name or an identifier beside it makes the record a person's too."""
    if not any(f.personal for f in findings):
        return None
    if any(
        f.personal
        and not set(f.categories) <= _ORGANISATION_KINDS
        and not _few_shaped_names(f, stats.get(f.column))
        for f in findings
    ):
        return None
    if any(_names_a_person(s, col) for col, s in stats.items()):
        return None
    for col, s in stats.items():
        if (
            names.organisation_name(col)
            and s.nonempty
            and s.whole.get("name", 0) < HINTED_SHAPE_SHARE * s.nonempty
        ):
            return col
    return None


def _organisation_contacts(findings: list[ColumnFinding], stats: dict[str, _ColumnStats]) -> dict[str, set]:
    """The organisation's own contacts, reported as such and not as a customer's data:
    - a column whose only findings are role e-mail addresses (service@, hr@, noreply@);
    - a column whose only findings are a few mobiles, phones or e-mails repeated across many
      values (the school's hotline in every course summary), in a table where nothing else is a
      person's; a structured contact column beside a person's name (a named staff contact) stays
      personal;
    - the telephones, addresses and e-mails of a record about an organisation (`_organisation_named`).
    The finding is cleared and its reason says why; returns column -> the kinds so cleared (a full
    scan does not add them back)."""
    by_column = {f.column: f for f in findings}
    named = any(_names_a_person(s, col) for col, s in stats.items())
    candidates: dict[str, str] = {}
    repeated: set[str] = set()
    organisation = _organisation_named(findings, stats)
    if organisation:
        for f in findings:
            if f.personal:
                candidates[f.column] = (
                    f"the organisation's own contact, not a customer's: a record about the organisation "
                    f"named in {organisation}, with nobody's name, mobile or identifier in it"
                )
    for f in findings:
        s = stats.get(f.column)
        if s is None or not f.personal or not set(f.categories) <= _CONTACT_KINDS:
            continue
        if _role_addresses(f, s):
            candidates[f.column] = (
                f"the organisation's own contact, not a customer's: the {len(s.contact_values['email'])} "
                "e-mail addresses found are role addresses"
            )
            continue
        if any(cat not in s.contact_values for cat in f.categories):
            continue
        if named and not _is_free_text(f.type, s, f.column):
            continue
        distinct = sum(len(s.contact_values[cat]) for cat in f.categories)
        values = max(s.containing.get(cat, 0) for cat in f.categories)
        if distinct <= ORGANISATION_CONTACT_MAX and values >= ORGANISATION_CONTACT_REPEAT * distinct:
            kinds = ", ".join(DESCRIPTIONS.get(c, c) for c in f.categories)
            repeated.add(f.column)
            candidates[f.column] = (
                f"the organisation's own contact, not a customer's: {values} of {f.values_checked} "
                f"values repeat {distinct} distinct {kinds}, in a table that holds nothing else of a person"
            )
    if any(f.personal and f.column not in candidates for f in findings):
        # a record about a person: the same number in many rows may still be theirs
        candidates = {c: why for c, why in candidates.items() if c not in repeated}
    cleared = {}
    for column, why in candidates.items():
        f = by_column[column]
        cleared[column] = set(f.categories)
        f.reason = f"{why} (detectors said: {f.reason})"
        f.categories, f.level, f.matches, f.masked_examples = [], None, 0, []
    return cleared


def _few_shaped_names(f: ColumnFinding, s: _ColumnStats | None) -> bool:
    """A column called a name by its values' shape alone (no name hint, no context, no file
    names) with fewer than FEW_NAMES distinct name-shaped values: a legal representative beside a
    company's record, a CMS's surname-led titles; not by itself a record about people."""
    return (
        s is not None
        and f.categories == ["name"]
        and not names.hints(f.column)
        and not s.context_names
        and not s.file_found
        and len(s.name_values) < FEW_NAMES
    )


def _few_names_no_people(findings: list[ColumnFinding], stats: dict[str, _ColumnStats]) -> None:
    """A column called a name by its values' shape alone (no name hint, no context) with only a few
    distinct values, in a table where nothing else is a person's, is not a list of people: a
    CMS's or an installer's rows whose titles happen to start with a common surname."""
    few = [f for f in findings if _few_shaped_names(f, stats.get(f.column))]
    if not few or any(f.personal and f not in few for f in findings):
        return
    for f in few:
        s = stats[f.column]
        f.reason = (
            f"{NOT_PEOPLE}: only {len(s.name_values)} distinct values have a name's shape, no name "
            f"hint, and nothing else in the table is a person's (detectors said: {f.reason})"
        )
        f.categories, f.level, f.matches, f.masked_examples = [], None, 0, []


NOT_PEOPLE = "not a table of people"


def _people_by_links(result: ClassificationResult, inventory: SourceInventory) -> None:
    """A table whose few name-shaped values were judged no table of people (`_few_names_no_people`)
    is one after all when it links to a table of people or one links to it (a declared, inferred
    or manifest link; a member's few named contacts): those names are restored."""
    few = [f for f in result.columns if f.reason.startswith(NOT_PEOPLE)]
    if not few:
        return
    people = {
        f.table
        for f in result.columns
        if f.personal and _PERSON_MARKERS & set(f.categories) and not f.reason.startswith("free text")
    }
    linked: dict[str, set[str]] = {}
    for link in _subject_links(inventory):
        linked.setdefault(link.table, set()).add(link.ref_table)
        linked.setdefault(link.ref_table, set()).add(link.table)
    for f in few:
        near = sorted(linked.get(f.table, set()) & people)
        if near:
            f.categories = ["name"]
            f.level = level_of(f.categories)
            f.matches = f.values_checked
            f.reason = (
                f"linked to {near[0]}, which holds people's data: a table of people after all; {f.reason}"
            )


# a record about a person: it holds their name or a number to reach them
_PERSON_MARKERS = frozenset(
    {"name", "cn_mobile", "phone", "address", "email", "cn_resident_id", "birth_date", "gender", "im_account"}
)


def _person_table_address_parts(findings: list[ColumnFinding], stats: dict[str, _ColumnStats]) -> None:
    """A district, postcode, city or province beside a person's name or number is part of their
    address; the same column in a table of shops or cities is not."""
    person = any(
        f.personal
        and _PERSON_MARKERS & set(f.categories)
        and not f.reason.startswith("free text")
        and not _few_shaped_names(f, stats.get(f.column))
        for f in findings
    )
    if not person:
        return
    for f in findings:
        s = stats.get(f.column)
        if s is None or f.personal or not s.nonempty:
            continue
        # a column called `name` (any name shape) or *_name (a strict one) beside a person's number
        fitting = s.plausible_names if s.generic_name else s.whole.get("name", 0)
        if names.split_name(f.column)[-1:] == ["name"] and fitting >= HINTED_SHAPE_SHARE * s.nonempty:
            f.categories = ["name"]
            f.level = level_of(f.categories)
            f.matches = fitting
            f.reason = (
                f"{_pct(fitting, s.nonempty)} of {s.nonempty} values have the shape of name, "
                "in a table that holds a person's number or address"
            )
            continue
        if names.profile_part(f.column) and s.mean_length <= FREE_TEXT_LENGTH:
            f.categories = ["employment"]
            f.level = level_of(f.categories)
            f.matches = s.nonempty
            f.reason = (
                f"name {f.column} says a person's school, class, employer or job, in a table that holds "
                f"a person's name or number; {s.nonempty} values"
            )
            continue
        if not names.address_part(f.column) and not (
            # `state` is as often a status: a state only beside a city or postcode, and in words
            names.split_name(f.column)[-1:] == ["state"]
            and any(names.address_part(c) for c in stats if c != f.column)
            and s.text_values >= 0.9 * s.nonempty
        ):
            continue
        if s.mean_length > FREE_TEXT_LENGTH or s.any_hit >= 0.5 * s.nonempty:
            continue
        if names.postcode(f.column) and s.text_values and s.with_digits < 0.5 * s.text_values:
            continue  # POST_CD holding COACH, SALES: a job's post, not a postcode
        f.categories = ["address"]
        f.level = level_of(f.categories)
        f.matches = s.nonempty
        f.reason = (
            f"name {f.column} says part of an address, in a table that holds a person's name or number; "
            f"{s.nonempty} values"
        )


def _person_table_body_measures(findings: list[ColumnFinding], stats: dict[str, _ColumnStats]) -> None:
    """Height, weight, blood pressure, body fat or temperature of a person are health information:
    in a table that refers to a person (a name, a number, a child_id or CUST_ID column) and holds two
    body measurements or more, or one body temperature whose values all lie in a human body's range
    (a morning check). A parcel's weight beside its sender's name is one measurement, not health."""
    person = any(
        f.personal and _PERSON_MARKERS & set(f.categories) and not f.reason.startswith("free text")
        for f in findings
    ) or any(names.person_reference(f.column) for f in findings)
    if not person:
        return
    measures = {}
    for f in findings:
        s = stats.get(f.column)
        kind = names.body_measure(f.column)
        if kind and s is not None and s.nonempty and not f.personal and s.mean_length <= FREE_TEXT_LENGTH:
            measures[f.column] = kind
    low, high = BODY_TEMPERATURE
    by_column = {f.column: f for f in findings}
    for column, kind in measures.items():
        s = stats[column]
        body_temperature = (
            "temperature" in kind
            and s.numbers == s.nonempty
            and low <= s.number_range[0]
            and s.number_range[1] <= high
        )
        if len(set(measures.values())) < 2 and not body_temperature:
            continue
        f = by_column[column]
        f.categories = ["health"]
        f.level = level_of(f.categories)
        f.matches = s.nonempty
        f.reason = (
            f"name {column} says a body measurement ({kind}), in a table about a person that "
            + (
                f"holds {len(set(measures.values()))} of them"
                if not body_temperature
                else f"holds body temperatures ({s.nonempty} values within {low:g}-{high:g} °C)"
            )
            + f"; {s.nonempty} values"
        )


def _place_own_contacts(table: str, findings: list[ColumnFinding]) -> dict[str, set]:
    """A telephone, address or e-mail column named after the place its table lists (STORE_TEL in
    STORE_INFO, depot_addr in t_depot) is that place's own contact, even beside its manager's name.
    A mobile number stays personal: a shop's mobile is often its keeper's."""
    cleared = {}
    for f in findings:
        if not f.personal or not set(f.categories) <= _ORGANISATION_KINDS:
            continue
        if not names.place_own_column(table, f.column):
            continue
        cleared[f.column] = set(f.categories)
        f.reason = (
            f"the organisation's own contact, not a person's: {f.column} is named after the place "
            f"its table lists (detectors said: {f.reason})"
        )
        f.categories, f.level, f.matches, f.masked_examples = [], None, 0, []
    return cleared


def _health_terms_no_people(findings: list[ColumnFinding], stats: dict[str, _ColumnStats]) -> list[str]:
    """Health terms in the free text of a table that holds nothing else of a person, beside the
    organisation's few contacts repeated in every value (a notice about flu season signed with the
    school's telephone), are about no one: dropped, so that the contacts are judged on their own. A
    diagnosis's findings (health terms alone) stay. Returns the columns so cleared (a full scan
    does not add the terms back)."""
    if any(names.person_reference(f.column) for f in findings):
        return []  # a record about a person (CUST_ID, child_id): its notes are theirs
    cleared = []
    for f in findings:
        s = stats.get(f.column)
        if s is None or "health" not in f.categories or "health" in names.hints(f.column):
            continue
        if s.context_names or any(
            g.personal and g is not f and not set(g.categories) <= {"health"} for g in findings
        ):
            continue
        contacts = set(f.categories) - {"health"}
        if not contacts or not contacts <= _CONTACT_KINDS or any(c not in s.contact_values for c in contacts):
            continue
        distinct = sum(len(s.contact_values[c]) for c in contacts)
        values = max(s.containing.get(c, 0) for c in contacts)
        if distinct > ORGANISATION_CONTACT_MAX or values < ORGANISATION_CONTACT_REPEAT * distinct:
            continue  # not the organisation's few contacts repeated: not its notice
        f.categories = [c for c in f.categories if c != "health"]
        f.level = level_of(f.categories) if f.categories else None
        f.reason += "; health terms in a table that holds nothing of a person are not counted"
        cleared.append(f.column)
        if not f.categories:
            f.matches, f.masked_examples = 0, []
    return cleared


# --- reading tables ------------------------------------------------------------------------------


def _table_clause(info: TableInfo, columns: Iterable[str]) -> sa.TableClause:
    return sa.table(info.name, *[sa.column(c) for c in columns], schema=info.schema)


_PLAIN_TEXT_TYPE = re.compile(r"CHAR|TEXT|CLOB", re.I)


def _sampled(t: sa.TableClause, name: str, column_type: str | None) -> sa.ColumnElement:
    """A text column is read in its first MAX_SAMPLE_CHARS + 1 characters (the sample scans no
    more, and the + 1 tells it the value was longer): a huge cell never reaches the client whole."""
    if _PLAIN_TEXT_TYPE.search(column_type or ""):
        # cast first: a reflected type can say VARCHAR for an enum or a domain substr does not take
        return sa.func.substr(sa.cast(t.c[name], sa.Text), 1, MAX_SAMPLE_CHARS + 1).label(name)
    return t.c[name]


def _every_kth(info: TableInfo, sample_size: int) -> tuple[str, int] | None:
    """(key column, k) when a sample of `info` takes every k-th row by its integer primary key."""
    if info.row_count <= sample_size or len(info.primary_key) != 1:
        return None
    key = info.primary_key[0]
    if "INT" not in next((c.type or "" for c in info.columns if c.name == key), "").upper():
        return None
    return key, math.ceil(info.row_count / sample_size)


def sample_query(engine: sa.Engine, info: TableInfo, sample_size: int) -> sa.Select:
    """All rows of a small table; of a larger one, a sample spread over the whole table: every
    k-th integer key (deterministic, uses the index), else rows in random order."""
    t = _table_clause(info, [c.name for c in info.columns])
    query = sa.select(*[_sampled(t, c.name, c.type) for c in info.columns])
    if info.row_count <= sample_size:
        return query.limit(sample_size)
    kth = _every_kth(info, sample_size)
    if kth is not None:
        pk = t.c[kth[0]]
        return query.where(pk % kth[1] == 0).order_by(pk).limit(sample_size)
    return query.order_by(dialect_for(engine).random_order()).limit(sample_size)


def _sample_by_keys(conn: sa.Connection, info: TableInfo, sample_size: int) -> list | None:
    """The rows `sample_query` gives, looked up by their keys in the key's index, or None when
    that cannot be told apart from the scan: `WHERE key % k = 0` makes the server read the whole
    table (a quarter of a second for two million rows), while the keys 0, k, 2k ... sample_size*k
    are one index lookup each. When no key is negative, and sample_size of those exist or no key
    is larger, they are the first sample_size multiples of k in key order: what the scan returns."""
    kth = _every_kth(info, sample_size)
    if kth is None:
        return None
    key, k = kth
    t = _table_clause(info, [c.name for c in info.columns])
    pk = t.c[key]
    lowest, highest = conn.execute(sa.select(sa.func.min(pk), sa.func.max(pk))).one()
    if lowest is None or lowest < 0:
        return None
    last = sample_size * k
    keys = sa.bindparam("sample_keys", list(range(0, last + 1, k)), expanding=True, literal_execute=True)
    query = sa.select(*[_sampled(t, c.name, c.type) for c in info.columns])
    rows = conn.execute(query.where(pk.in_(keys)).order_by(pk).limit(sample_size)).all()
    return rows if len(rows) == sample_size or highest <= last else None


def _where(engine: sa.Engine) -> str:
    url = engine.url
    return f"host {url.host}" if url.host else f"file {url.database}" if url.database else "memory"


def _reason(exc: Exception) -> str:
    # class and code only: a driver's message may quote a value (SQLite's decode error does)
    return database_error(exc) if is_database_error(exc) else type(exc).__name__


def _source_error(source_id: str, engine: sa.Engine, what: str, reason: str) -> SourceError:
    return SourceError(
        f"source {source_id} at {_where(engine)}: {what} failed ({reason}); check that the "
        "database is reachable and that the connection's user may read every table"
    )


def _stream(conn: sa.Connection, query) -> sa.CursorResult:
    return conn.execution_options(stream_results=True, yield_per=SCAN_BATCH).execute(query)


def _classify_table_sample(
    engine: sa.Engine, info: TableInfo, sample_size: int, own_contacts: frozenset = frozenset()
) -> dict[str, _ColumnStats]:
    stats = {
        c.name: _ColumnStats(
            hinted=tuple(names.hints(c.name)),
            generic_name=names.is_generic_name(c.name),
            own_contacts=own_contacts,
        )
        for c in info.columns
    }
    if info.columns:
        with engine.connect() as conn:
            rows = _sample_by_keys(conn, info, sample_size)
            if rows is None:
                rows = _stream(conn, sample_query(engine, info, sample_size)).all()
        # column by column: each column's statistics are its own, and one detector after another
        # over a column's values costs a fifth less than over a row's mixed kinds
        for col, values in zip(info.columns, zip(*rows, strict=True), strict=True) if rows else ():
            column = stats[col.name]
            _search_sample_column(column, values)
            add = column.add
            for value in values:
                add(value)
    return stats


def _sample_text(value) -> str | None:
    """The text `_ColumnStats.add` searches for identifiers in a plain value (a string, a number
    other than bool, float and Decimal), or None."""
    if type(value) is str:  # the common cases, without the tests below
        text = value.strip()
        return text[:MAX_SAMPLE_CHARS] if text else None
    if type(value) is int:  # (not a bool): digits, no spaces
        return str(value)
    if value is None or isinstance(
        value, bytes | bytearray | memoryview | date | bool | float | Decimal | dict | list
    ):
        return None
    text = str(value).strip()
    return text[:MAX_SAMPLE_CHARS] if text else None


def _search_sample_column(stats: _ColumnStats, values) -> None:
    """Tell `stats` which detectors may find something in each of the column's sampled texts, from
    one native search over all of them (`scanner.span_masks`): most values then need no candidate
    search of their own, the others only their few detectors' patterns."""
    texts = list(
        dict.fromkeys(t for t in map(_sample_text, values) if t is not None and len(t) <= _MASKED_LENGTH)
    )
    # searched a part of at most _MASKED_CHARS at a time: memory stays as small as value by value
    start = 0
    while start < len(texts):
        end, size = start, 0
        while end < len(texts) and (end == start or size + len(texts[end]) <= _MASKED_CHARS):
            size += len(texts[end]) + 1
            end += 1
        masks = span_masks(texts[start:end])
        if masks is not None:
            stats.span_masks.update(zip(texts[start:end], masks, strict=True))
        start = end


#: sampled texts up to this long are searched together (`_search_sample_column`), longer ones alone
_MASKED_LENGTH = 4096
#: characters of a column's sample searched together at most
_MASKED_CHARS = 1 << 20


def full_scan_columns(info: TableInfo) -> list[str]:
    """Columns a full scan reads: all but booleans, dates, times and fractional numbers."""
    return [c.name for c in info.columns if not _SKIP_IN_FULL_SCAN.match(c.type or "")]


def _full_hits(
    engine: sa.Engine, info: TableInfo, cols: list[str], own_contacts: frozenset = frozenset()
) -> tuple[dict[str, Counter], dict]:
    """Per column: category -> values holding it, over every row; and masked examples. Hits that
    are the organisation's own contacts (`own_contacts`, from the manifest) are not counted."""
    hits: dict[str, Counter] = {c: Counter() for c in cols}  # key "_any": values with any hit
    examples: dict[str, dict[str, list[str]]] = {c: {} for c in cols}
    types = {c.name: c.type or "" for c in info.columns}
    dialect = dialect_for(engine)
    if dialect.narrow_integers:  # SQLite's INTEGER holds 8 bytes: a mobile fits
        cols = [c for c in cols if not _TOO_SHORT_FOR_IDS.match(types.get(c, ""))]
    if not cols:
        return hits, examples
    blocks = dialect.text_blocks(
        engine, _table_clause(info, cols), cols, block_chars=BLOCK_CHARS, batch=SCAN_BATCH
    )
    counters = [hits[c] for c in cols]
    # examples in stream order: each path (the digit-run columns, the stream) keeps per column
    # and kind the first few distinct masked values with the position of their first hit; the
    # first few of both, merged by position, are the first few of the whole stream
    # (a value is masked only while its column and kind still want examples)
    digit_examples: list[dict[str, list]] = [{} for _ in cols]
    stream_examples: list[dict[str, list]] = [{} for _ in cols]
    # per column and kind, the raw values the stream path masked already (the same health term
    # or hotline in many values would be masked again for every one of them)
    stream_tried: list[dict[str, set]] = [{} for _ in cols]

    def example(
        candidates: dict[str, list], detector, raw: str, key: tuple[int, int], tried: set | None = None
    ) -> None:
        found = candidates.setdefault(detector.CATEGORY, [])
        if len(found) < _EXAMPLES:
            if tried is not None:  # a value met before masks as before: not a new example
                if raw in tried:
                    return
                if len(tried) < _TRIED_CAP:
                    tried.add(raw)
            masked = detector.mask(detector.compact(raw))
            if all(masked != m for _, m in found):
                found.append((key, masked))

    def on_digit_hits(groups: list) -> None:
        # a digit-run value holds one hit and nothing the stream sees: count each column's hits
        # of one kind at once, and mask values only for its first few distinct examples
        for group in groups:
            detector, index = group.detector, group.index
            category = detector.CATEGORY
            counter = counters[group.index]
            candidates = digit_examples[index]
            if own_contacts:
                for line_start, _, _, raw in group.tuples():
                    if (category, detector.compact(raw)) in own_contacts:
                        continue
                    counter["_any"] += 1
                    counter[category] += 1
                    if len(candidates.get(category, ())) < _EXAMPLES:
                        example(candidates, detector, raw, (line_start, -1))
                continue
            counter["_any"] += len(group)
            counter[category] += len(group)
            # this group's first few distinct examples, merged with those of earlier groups by
            # position: the first few of both are the first few of the whole stream
            mine: dict[str, list] = {}
            tried: set[str] = set()
            for k in range(len(group)):
                if len(mine.get(category, ())) >= _EXAMPLES:
                    break
                example(mine, detector, group.values[k], (int(group.positions[k]), -1), tried)
            merged = sorted(candidates.get(category, []) + mine.get(category, []))
            kept: list = []
            for key, masked in merged:
                if len(kept) < _EXAMPLES and all(masked != m for _, m in kept):
                    kept.append((key, masked))
            candidates[category] = kept

    # stream_hits yields the hits of one value next to each other, whatever the cuts between
    # blocks: count a value once per category by remembering only the current one
    current: tuple[int, int] | None = None
    categories: set[str] = set()
    for seq, (line_start, index, detector, raw) in enumerate(
        stream_hits(digit_fields(blocks, on_digit_hits))
    ):
        category = detector.CATEGORY
        if index >= len(cols) or (own_contacts and (category, detector.compact(raw)) in own_contacts):
            continue
        counter = counters[index]
        if (line_start, index) != current:
            current, categories = (line_start, index), set()
            counter["_any"] += 1
        if category not in categories:
            categories.add(category)
            counter[category] += 1
        candidates = stream_examples[index]
        if len(candidates.get(category, ())) < _EXAMPLES:
            example(
                candidates, detector, raw, (line_start, seq), stream_tried[index].setdefault(category, set())
            )
    for col, from_digits, from_stream in zip(cols, digit_examples, stream_examples, strict=True):
        merged = {
            c: sorted(from_digits.get(c, []) + from_stream.get(c, [])) for c in {**from_digits, **from_stream}
        }
        for category, found in sorted(merged.items(), key=lambda kv: kv[1][0][0]):  # by first hit
            ordered: list[str] = []
            for _, masked in found:
                if masked not in ordered and len(ordered) < _EXAMPLES:
                    ordered.append(masked)
            examples[col][category] = ordered
    return hits, examples


def _non_null_counts(engine: sa.Engine, info: TableInfo, cols: list[str]) -> dict[str, int]:
    """Per column of `cols`, the values that are neither NULL nor, in a text column, the empty
    string (as the sample counts them: an empty value holds nothing, and a share of the sample
    scaled to the column must not count it), in one statement. Any other column declared NOT NULL
    is counted as the rows themselves (`count(*)`, once for all of them): the server then need not
    take that column out of every row (a table of two million rows of NOT NULL keys took a sixth
    of a second more for nothing)."""
    types = {c.name: c.type for c in info.columns}
    text = [c for c in cols if _PLAIN_TEXT_TYPE.search(types.get(c) or "")]
    declared = {c.name for c in info.columns if not c.nullable}
    counted = [c for c in cols if c in text or c not in declared]
    t = _table_clause(info, counted)

    def count(name: str) -> sa.ColumnElement:
        if name in text:  # cast first: a reflected VARCHAR may be an enum or a domain
            return sa.func.count(sa.func.nullif(sa.cast(t.c[name], sa.Text), ""))
        return sa.func.count(t.c[name])

    with engine.connect() as conn:
        rows, *row = conn.execute(
            sa.select(sa.func.count(), *[count(c) for c in counted]).select_from(t)
        ).one()
    counts = dict(zip(counted, (int(v) for v in row), strict=True))
    return {c: counts.get(c, int(rows)) for c in cols}


def _side_by_side(engine: sa.Engine) -> bool:
    """Whether work on a table may run on connections of its own beside its scan: the dialect reads
    tables side by side and the engine's pool holds more than one connection."""
    one_connection = (sa.pool.StaticPool, sa.pool.SingletonThreadPool, sa.pool.AssertionPool)
    return dialect_for(engine).parallel_scan and not isinstance(engine.pool, one_connection)


def _beside(work: Callable[[], object]) -> Callable[[], object]:
    """`work()` started now in a thread (`_side_by_side` says when that is allowed); the returned
    function waits for it and gives its result (or raises what it raised)."""
    import threading

    outcome: list = []

    def run() -> None:
        try:
            outcome.append((False, work()))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome.append((True, exc))

    thread = threading.Thread(target=run, name="dereg-beside-scan", daemon=True)
    thread.start()

    def result() -> object:
        thread.join()
        raised, value = outcome[0]
        if raised:
            raise value
        return value

    return result


def _non_null_counts_beside(
    engine: sa.Engine, info: TableInfo, cols: list[str]
) -> Callable[[], dict[str, int]]:
    """`_non_null_counts`, started now on a connection of its own in a thread where the dialect
    reads tables side by side and the engine's pool holds more than one connection (the server
    counts while this process samples and scans the table: the count is a whole read of the
    table, which was waited for after the scan); the returned function waits for it (and raises
    what it raised)."""
    if not cols:
        return dict
    if not _side_by_side(engine):
        return lambda: _non_null_counts(engine, info, cols)
    import threading

    outcome: list = []

    def count() -> None:
        try:
            outcome.append(_non_null_counts(engine, info, cols))
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=count, name="dereg-non-null-counts", daemon=True)
    thread.start()

    def result() -> dict[str, int]:
        thread.join()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    return result


def classify_table(
    engine: sa.Engine,
    info: TableInfo,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    full: bool = False,
    own_contacts: frozenset = frozenset(),
    after_sample: Callable[[list[ColumnFinding]], None] | None = None,
) -> list[ColumnFinding]:
    """One finding per column of one table. A sample decides the shapes (names, dates, genders);
    with `full`, every value of every text and integer column is also scanned for identifiers and
    the counts cover the whole table. `own_contacts` (`own_contact_values`) are never personal.
    `after_sample(findings)` is called with the sample's findings before the full scan, which may
    still change them."""
    cols = full_scan_columns(info) if full else []
    counted = _non_null_counts_beside(engine, info, cols)
    stats = _classify_table_sample(engine, info, sample_size, own_contacts)
    if dialect_for(engine).typeless_text:
        for s in stats.values():
            s.typeless_text = True
    table = info.qualified_name
    findings = [_conclude(table, c.name, c.type, stats[c.name]) for c in info.columns]
    no_people = _health_terms_no_people(findings, stats)
    organisation_contacts = _organisation_contacts(findings, stats)
    for column in no_people:
        organisation_contacts.setdefault(column, set()).add("health")
    for column, kinds in _place_own_contacts(table, findings).items():
        organisation_contacts.setdefault(column, set()).update(kinds)
    _few_names_no_people(findings, stats)
    _person_table_images(findings, stats)
    _person_table_address_parts(findings, stats)
    _person_table_body_measures(findings, stats)
    if not full:
        return findings
    if after_sample is not None:
        after_sample(findings)
    hits, examples = _full_hits(engine, info, cols, own_contacts)
    counts = counted()
    by_column = {f.column: f for f in findings}
    for col in cols:
        f = by_column[col]
        n = counts.get(col, 0)
        found = {
            cat: k
            for cat, k in hits[col].items()
            if cat not in NOT_PERSONAL
            and cat != "_any"
            and cat not in organisation_contacts.get(col, ())
            and not (cat in _DOCUMENT_LOOKALIKES and names.document_number(col))
        }
        sampled, f.values_checked = f.values_checked, n
        if not found:
            # shapes (names, genders) are judged on the sample; scale its share to the whole column
            f.matches = round(f.matches / sampled * n) if f.personal and sampled else 0
            continue
        column_type = next(c.type for c in info.columns if c.name == col)
        free_text = (
            _free_text_type(column_type, stats[col])
            or stats[col].mean_length > FREE_TEXT_LENGTH
            or names.remark(col)
        )
        hinted = names.hints(col)
        new = []
        for cat, k in sorted(found.items(), key=lambda kv: -kv[1]):
            if cat in f.categories:
                continue
            if free_text or (k / max(n, 1) >= _threshold(cat, hinted) and k >= min(3, n)):
                new.append(cat)
                f.reason += f"; full scan: {k} of {n} values contain valid {DESCRIPTIONS.get(cat, cat)}"
        f.categories += new
        f.level = level_of(f.categories)
        f.matches = hits[col]["_any"] if f.categories else 0
        extra = [m for cat in f.categories for m in examples[col].get(cat, [])]
        f.masked_examples = (f.masked_examples + [m for m in extra if m not in f.masked_examples])[:3]
    return findings


def classify_source(
    engine: sa.Engine,
    inventory: SourceInventory,
    *,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    closure_date: date,
    subject_table: str | None,
    full: bool = False,
    tables: Iterable[str] | None = None,
    progress: Callable[[str], None] | None = None,
    own_contacts: Iterable[str] = (),
    minors_everywhere: bool = False,
) -> ClassificationResult:
    """One finding per column of every table (or of `tables`); minors counted among the rows of
    `subject_table` when it is among them, or with `minors_everywhere` (and no subject table) in
    every table of people (`_count_minors_everywhere`). A table that cannot be read is listed in
    `problems`. The identifiers in `own_contacts` (the manifest's contacts: the organisation's own
    e-mail addresses and numbers) are the company's and never count as personal data."""
    own = own_contact_values(own_contacts)
    wanted = set(tables) if tables is not None else None
    result = ClassificationResult(
        source_id=inventory.source_id, columns=[], mode="full" if full else "sample", sample_size=sample_size
    )
    selected = [
        t for t in inventory.tables if wanted is None or t.qualified_name in wanted or t.name in wanted
    ]
    readable = [t for t in selected if not t.problem]
    counted = bool(subject_table and (wanted is None or subject_table in wanted))
    everywhere = minors_everywhere and subject_table is None
    # the worker that classified a table counts the minors among its rows while the others are
    # still read; a table with a profile table (or one) is counted afterwards, with the other
    tables_with_profiles = {
        name
        for t in inventory.tables
        for link in profile_links(inventory, t)
        for name in (t.qualified_name, link.table)
    }
    alone = {t.qualified_name for t in readable} - tables_with_profiles
    if counted:
        subject = next((t for t in readable if subject_table in (t.name, t.qualified_name)), None)
        alone &= {subject.qualified_name} if subject is not None else set()
    elif not everywhere:
        alone = set()
    # a full scan runs tables side by side in worker processes (parallel.workers_for says when)
    outcomes = parallel.map_tables(
        engine,
        readable,
        _classify_table_task,
        sample_size,
        full,
        own,
        (frozenset(alone), everywhere, closure_date),
        reason=_reason,
        weight=_scan_weight,
        workers=None if full else 1,
    )
    minor_counts: dict[str, MinorCount] = {}
    for i, info in enumerate(selected, start=1):
        if info.problem:
            result.problems.append({"table": info.qualified_name, "reason": info.problem})
            continue
        outcome = next(outcomes)
        if isinstance(outcome, parallel.TableFailure):
            reason = f"cannot be read ({outcome.reason})"
            result.problems.append({"table": info.qualified_name, "reason": reason})
            log.warning("source %s, table %s: %s", inventory.source_id, info.qualified_name, reason)
            continue
        findings, minor_count = outcome
        result.columns += findings
        if minor_count is not None:
            minor_counts[info.qualified_name] = minor_count
        if progress:
            progress(
                f"classified {info.qualified_name} ({i} of {len(selected)} tables, {info.row_count:,} rows)"
            )
    _people_by_links(result, inventory)
    if counted:
        try:
            subject_name = inventory.table(subject_table).qualified_name
        except KeyError:
            subject_name = subject_table
        try:
            count_minors(
                engine, inventory, result, subject_table, closure_date, minor_counts.get(subject_name)
            )
        except sa.exc.SQLAlchemyError as exc:
            result.problems.append(
                {"table": subject_table, "reason": f"minors could not be counted ({_reason(exc)})"}
            )
    elif everywhere:
        _count_minors_everywhere(engine, inventory, result, closure_date, minor_counts)
    log.info(
        "classified %s: %d columns, %d personal; %s; %d table problem(s)",
        inventory.source_id,
        len(result.columns),
        sum(1 for f in result.columns if f.personal),
        f"{result.minors} of {result.subjects} subjects are minors"
        if counted or everywhere
        else "minors not counted here",
        len(result.problems),
    )
    return result


def own_contact_values(texts: Iterable[str]) -> frozenset:
    """(category, value) of every identifier inside the organisation's own contact texts (the
    manifest's `contacts`: "客服 400-820-8820, service@example.com"), as the scanner reports them."""
    return frozenset((cat, value) for text in texts if text for cat, _, _, value in spans(str(text)))


def is_under(age: int, born: date, on: date) -> bool:
    """True when someone born on `born` has not reached `age` years on `on`."""
    try:
        birthday = born.replace(year=born.year + age)
    except ValueError:  # born on 29 February: the birthday is 1 March in common years
        birthday = date(born.year + age, 3, 1)
    return on < birthday


def _subject_links(inventory: SourceInventory) -> list:
    """Declared foreign keys and the inventory's links (inferred, manifest), once each."""
    from dereg.inventory.links import declared_links

    seen, links = set(), []
    for link in [*declared_links(inventory), *inventory.links]:
        key = (link.table, tuple(link.columns), link.ref_table, tuple(link.ref_columns))
        if key not in seen:
            seen.add(key)
            links.append(link)
    return links


def _one_to_one(link, inventory: SourceInventory) -> bool:
    """Each referenced row has at most one row of `link.table`: the link's columns are that table's
    primary key or one of its unique keys (a profile table per user)."""
    try:
        table = inventory.table(link.table)
    except KeyError:
        return False
    keys = [table.primary_key, *getattr(table, "unique_keys", [])]
    return any(key and sorted(key) == sorted(link.columns) for key in keys)


def profile_links(inventory: SourceInventory, subject: TableInfo) -> list:
    """The links of tables holding at most one row per subject (`user_profile.user_id` as its
    primary or unique key) to the subject table's primary key: where a subject's birth date or
    resident ID may be, besides the subject table."""
    return [
        link
        for link in _subject_links(inventory)
        if link.ref_table == subject.qualified_name
        and link.table != subject.qualified_name
        and sorted(link.ref_columns or subject.primary_key) == sorted(subject.primary_key)
        and _one_to_one(link, inventory)
    ]


def _age_columns(
    result: ClassificationResult, table: str
) -> tuple[ColumnFinding | None, ColumnFinding | None]:
    mine = [f for f in result.columns if f.table == table]
    return (
        next((f for f in mine if "birth_date" in f.categories), None),
        next((f for f in mine if "cn_resident_id" in f.categories), None),
    )


def _is_minor(row, birth_col, id_col, closure_date: date) -> bool:
    born = _as_date(row[0]) if birth_col is not None else None
    raw = row[-1] if id_col is not None else None
    if born is None and raw:
        raw = str(raw)
        born = cn_resident_id.birth_date(raw) if cn_resident_id.is_valid(raw) else None
    return born is not None and is_under(MINOR_AGE, born, closure_date)


def _minor_rows(rows: list, keys: int, birth_col, id_col, closure_date: date) -> list:
    """The rows (subject key..., birth date, resident ID) of `rows` that are minors, as `_is_minor`
    says: birth dates (date values) and 18-character resident IDs are judged a batch at a time
    with numpy (`digit_runs`), any other value row by row."""
    import numpy as np

    from dereg.classify import digit_runs

    found = []
    dated: list[tuple[object, date]] = []  # (row, birth date)
    ids: list[tuple[object, str]] = []  # (row, resident ID) of rows without a birth date
    for row in rows:
        born = row[keys] if birth_col is not None else None
        if born is not None:
            if type(born) is date:
                dated.append((row, born))
            elif _is_minor(row[keys:], birth_col, id_col, closure_date):
                found.append(row)
            continue
        raw = row[-1] if id_col is not None else None
        if not raw:
            continue
        if (
            type(raw) is str
            and len(raw) == 18
            and raw.isascii()
            and raw[:17].isdigit()
            and raw[17] in _ID_LAST
        ):
            ids.append((row, raw))
        elif _is_minor(row[keys:], birth_col, id_col, closure_date):
            found.append(row)
    on = closure_date.year * 10000 + closure_date.month * 100 + closure_date.day
    if dated:
        # ordinals (day 1 is 0001-01-01) to days since 1970-01-01 (ordinal 719163): quicker than
        # numpy's conversion of date objects
        ordinals = np.fromiter((born.toordinal() for _, born in dated), dtype=np.int64, count=len(dated))
        days = (ordinals - 719163).astype("datetime64[D]")
        months = days.astype("datetime64[M]")
        year = months.astype("datetime64[Y]").astype(np.int64) + 1970
        month = months.astype(np.int64) % 12 + 1
        day = (days - months).astype(np.int64) + 1
        found += [dated[i][0] for i in np.flatnonzero(_under(year, month, day, on)).tolist()]
    if ids:
        chars = np.array([raw for _, raw in ids], dtype="<U18").view(np.uint32).reshape(len(ids), 18)
        valid = digit_runs.resident_ids(chars)
        digits = chars[:, 6:14].astype(np.int64) - 48
        year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
        month, day = digits[:, 4] * 10 + digits[:, 5], digits[:, 6] * 10 + digits[:, 7]
        found += [ids[i][0] for i in np.flatnonzero(valid & _under(year, month, day, on)).tolist()]
    return found


_ID_LAST = frozenset("0123456789Xx")


def _under(year, month, day, on: int):
    """Element-wise `is_under(MINOR_AGE, born, closure)` for real dates given as year, month and day
    arrays, with `on` the closure date as YYYYMMDD: the birthday MINOR_AGE years on (1 March for
    29 February in a common year) is after the closure date."""
    import numpy as np

    target = year + MINOR_AGE
    leap = (target % 4 == 0) & ((target % 100 != 0) | (target % 400 == 0))
    moved = (month == 2) & (day == 29) & ~leap
    birthday = target * 10000 + np.where(moved, 301, month * 100 + day)
    return on < birthday


@dataclass(frozen=True)
class MinorCount:
    """The minors among one table's own rows, counted by the worker that classified it (while the
    other tables are still being read) for `count_minors` to use."""

    table: str
    columns: tuple[str | None, str | None]  # the birth date and resident ID columns read
    subjects: int
    minors: int


def _is_person_table(findings: list[ColumnFinding]) -> bool:
    """A table whose minors are counted when there is no subject table: it holds birth dates or
    resident IDs in columns of their own (not inside free text)."""
    return any(
        {"birth_date", "cn_resident_id"} & set(f.categories) and not f.reason.startswith("free text")
        for f in findings
    )


def _minors_of_own_rows(
    engine: sa.Engine, info: TableInfo, findings: list[ColumnFinding], closure_date: date
) -> MinorCount | None:
    """`count_minors` of `info` from its own rows alone, or None when it has no age column or
    cannot be read (the caller then counts as before and reports the problem)."""
    result = ClassificationResult(source_id="", columns=findings)
    birth_col, id_col = _age_columns(result, info.qualified_name)
    return _minors_by_columns(engine, info, birth_col, id_col, closure_date)


def _minors_by_columns(
    engine: sa.Engine,
    info: TableInfo,
    birth_col: ColumnFinding | None,
    id_col: ColumnFinding | None,
    closure_date: date,
) -> MinorCount | None:
    """`_minors_of_own_rows` with its age columns given (only their names count)."""
    if birth_col is None and id_col is None:
        return None
    # its rows alone: each is one subject, so its minors are counted by row, without reading keys
    rows = dataclasses.replace(info, primary_key=[])
    age_cols = [f.column for f in (birth_col, id_col) if f is not None]
    t = _table_clause(info, age_cols)
    query = sa.select(*[t.c[c] for c in age_cols])
    try:
        counted = _minors_counted_on_server(engine, info, birth_col, id_col, closure_date)
        if counted is not None:
            subjects, minors = counted
        else:
            subjects, minors, _ = _read_minors(
                engine, rows, info.qualified_name, [(rows, birth_col, id_col, query)], closure_date
            )
    except sa.exc.SQLAlchemyError:
        return None
    columns = tuple(f.column if f else None for f in (birth_col, id_col))
    return MinorCount(info.qualified_name, columns, subjects, minors)


def _latest_birth_not_minor(closure_date: date) -> date:
    """The last birth date of someone who is not a minor on `closure_date` (`is_under` grows with
    the birth date: everyone born later is a minor, no one born on it or before)."""
    born = date(closure_date.year - MINOR_AGE, 1, 1)  # turned MINOR_AGE on 1 January: not a minor
    while not is_under(MINOR_AGE, born + timedelta(days=1), closure_date):
        born += timedelta(days=1)
    return born


def _minors_counted_on_server(
    engine: sa.Engine,
    info: TableInfo,
    birth_col: ColumnFinding | None,
    id_col: ColumnFinding | None,
    closure_date: date,
) -> tuple[int, int] | None:
    """(rows, minors) of `info`, each row one subject, as `_read_minors` counts them, with the
    server counting what it can tell (`Dialect.born_by`): the rows whose DATE column says born
    after the cut-off are minors, those it says born on it or before are not; only the rows it
    cannot tell (no birth date, and a resident ID the server does not place before the
    cut-off) are read back and judged here. None when the dialect cannot compare so or the
    birth date column is not of type DATE (then every row is read back)."""
    dialect = dialect_for(engine)
    types = {c.name: (c.type or "").upper() for c in info.columns}
    cutoff = _latest_birth_not_minor(closure_date)
    age_cols = [f.column for f in (birth_col, id_col) if f is not None]
    t = _table_clause(info, age_cols)
    counts = [sa.func.count()]
    unknown = []  # conditions of the rows read back
    if birth_col is not None:
        born = t.c[birth_col.column]
        if types.get(birth_col.column) != "DATE" or dialect.born_by(born, cutoff, resident_id=False) is None:
            return None
        counts.append(sa.func.count(sa.case((born > cutoff, 1))))
        unknown.append(born.is_(None))
    if id_col is not None:
        raw = t.c[id_col.column]
        by_id = dialect.born_by(raw, cutoff, resident_id=True)
        if by_id is None:
            return None
        unknown += [raw.is_not(None), sa.not_(by_id)]
    with engine.connect() as conn:
        subjects, *dated = conn.execute(sa.select(*counts).select_from(t)).one()
        minors = int(dated[0]) if dated else 0
        if id_col is not None:
            query = sa.select(*[t.c[c] for c in age_cols]).where(*unknown)
            for rows in _stream(conn, query).partitions():
                minors += len(_minor_rows(rows, 0, birth_col, id_col, closure_date))
    return int(subjects), minors


def _read_minors(
    engine: sa.Engine, subject: TableInfo, subject_table: str, sources: list, closure_date: date
) -> tuple[int, int, list[tuple[TableInfo, ColumnFinding, int]]]:
    """(subjects, minors, [(table, age column's finding, minor rows)]) read from `sources` (as
    `count_minors` lists them)."""
    pk = list(subject.primary_key)
    minor_keys: set[tuple] = set()
    unkeyed = 0  # minors of a subject table without a primary key (read from its own rows only)
    found: list[tuple[TableInfo, ColumnFinding, int]] = []
    with engine.connect() as conn:
        for table, b_col, i_col, query in sources:
            n = 0
            try:
                for rows in _stream(conn, query).partitions():
                    for row in _minor_rows(rows, len(pk), b_col, i_col, closure_date):
                        n += 1
                        if pk:
                            minor_keys.add(tuple(row[: len(pk)]))
                        else:
                            unkeyed += 1
            except sa.exc.SQLAlchemyError as exc:
                if table is subject:
                    raise
                # a profile table that cannot be joined (types that differ) is skipped, not fatal
                log.warning(
                    "minors in %s (linked to %s) could not be read (%s); counted from the other tables",
                    table.qualified_name,
                    subject_table,
                    _reason(exc),
                )
                conn.rollback()
                continue
            if n:
                found.append((table, b_col or i_col, n))
        subjects = conn.execute(
            sa.select(sa.func.count()).select_from(_table_clause(subject, []))
        ).scalar_one()
    return int(subjects), len(minor_keys) + unkeyed, found


def count_minors(
    engine: sa.Engine,
    inventory: SourceInventory,
    result: ClassificationResult,
    subject_table: str,
    closure_date: date,
    counted: MinorCount | None = None,
) -> None:
    """Count the subjects under 14 on the closure date (a birth date column, else the birth date in
    a resident ID) from the subject table and from every table linked one-to-one to it (a profile
    table, `profile_links`); a subject is counted once, a minor by either. Raise every personal
    column of the subject table and of the tables that refer to it to sensitive. `counted`: the
    count a worker made of the subject table's own rows (`_minors_of_own_rows`), used when no
    profile table adds to it and it read the same columns."""
    try:
        subject = inventory.table(subject_table)
    except KeyError:
        log.warning(
            "subject table %s is not in source %s; minors not counted", subject_table, inventory.source_id
        )
        return
    pk = list(subject.primary_key)
    # (table, birth-date finding, resident-ID finding, query yielding: subject key..., birth, ID)
    sources = []
    birth_col, id_col = _age_columns(result, subject.qualified_name)
    if birth_col is not None or id_col is not None:
        age_cols = [f.column for f in (birth_col, id_col) if f is not None]
        t = _table_clause(subject, list(dict.fromkeys(pk + age_cols)))
        ages = [t.c[f.column] for f in (birth_col, id_col) if f is not None]
        sources.append((subject, birth_col, id_col, sa.select(*[t.c[c] for c in pk], *ages)))
    if pk:
        for link in profile_links(inventory, subject):
            profile = inventory.table(link.table)
            p_birth, p_id = _age_columns(result, profile.qualified_name)
            if p_birth is None and p_id is None:
                continue
            age_cols = [f.column for f in (p_birth, p_id) if f is not None]
            p = _table_clause(profile, list(dict.fromkeys(link.columns + age_cols))).alias("profile")
            s = _table_clause(subject, pk).alias("subject")
            refs = link.ref_columns or pk
            on = sa.and_(*[p.c[c] == s.c[r] for c, r in zip(link.columns, refs, strict=True)])
            query = sa.select(*[s.c[c] for c in pk], *[p.c[c] for c in age_cols]).select_from(s.join(p, on))
            sources.append((profile, p_birth, p_id, query))
    if not sources:
        result.subjects = subject.row_count
        log.warning(
            "no birth date or resident ID column in %s or a table linked one-to-one to it; minors cannot "
            "be counted",
            subject_table,
        )
        return
    if (
        counted is not None
        and counted.table == subject.qualified_name
        and len(sources) == 1
        and counted.columns == tuple(f.column if f else None for f in (birth_col, id_col))
    ):
        subjects, minors = counted.subjects, counted.minors
        found = [(subject, birth_col or id_col, minors)] if minors else []
    else:
        subjects, minors, found = _read_minors(engine, subject, subject_table, sources, closure_date)
    result.subjects, result.minors = subjects, minors
    log.info(
        "minors in %s: %d of %d subjects, read from %s",
        subject_table,
        minors,
        subjects,
        ", ".join(f"{t.qualified_name} ({n})" for t, _, n in found)
        or ", ".join(t.qualified_name for t, *_ in sources),
    )
    if not minors:
        return
    for _, used, _ in found:
        if "minor" not in used.categories:
            used.categories.append("minor")
    linked = {subject.qualified_name} | {
        link.table for link in _subject_links(inventory) if link.ref_table == subject.qualified_name
    }
    note = (
        f"sensitive: {minors} of {subjects} subjects in {subject_table} are under {MINOR_AGE} on "
        f"{closure_date.isoformat()} (PIPL Art. 28)"
    )
    for f in result.columns:
        if f.personal and f.table in linked:
            f.level = "sensitive"
            f.reason = f"{f.reason}; {note}" if f.reason else note


def _count_minors_everywhere(
    engine: sa.Engine,
    inventory: SourceInventory,
    result: ClassificationResult,
    closure_date: date,
    counts: dict[str, MinorCount],
) -> None:
    """Without a subject table: count minors in every table with birth dates or resident IDs; a
    table linked one-to-one to another (a profile table) is counted with the table it belongs to,
    whose rows are then the subjects (`count_minors` reads both). `counts`: the tables' own
    counts made by their workers."""
    found = {f.table for f in result.columns if _is_person_table([f])}
    owners = {}
    for t in inventory.tables:
        for link in profile_links(inventory, t):
            owners.setdefault(link.table, t.qualified_name)
    person_tables = sorted({owners.get(table, table) for table in found})
    subjects = minors = 0
    for table in person_tables:
        count_minors(engine, inventory, result, table, closure_date, counts.get(table))
        subjects += result.subjects
        minors += result.minors
    result.subjects, result.minors = subjects, minors


def apply_overrides(result: ClassificationResult, overrides: Iterable) -> list[str]:
    """Pin the categories of columns the manifest names (or mark them not personal); returns the
    overrides that matched no column, so a typo is reported, never silently ignored."""
    unmatched = []
    for o in overrides:
        finding = next((f for f in result.columns if f.table == o.table and f.column == o.column), None)
        if finding is None:
            unmatched.append(f"{o.table}.{o.column}")
            continue
        finding.categories = list(o.categories)
        finding.level = level_of(finding.categories)
        finding.override = o.reason
        was = finding.reason
        pinned = ", ".join(o.categories) if o.categories else "not personal"
        finding.reason = f"manifest override ({pinned}): {o.reason}; detectors said: {was}"
    return unmatched


# --- post-erasure scan ---------------------------------------------------------------------------


def text_columns(info: TableInfo) -> list[str]:
    return [c.name for c in info.columns if _TEXT_TYPE.search(c.type or "")]


# --- what worker processes run (module-level: they travel to the workers by name) ------------------


#: characters a full scan reads per row besides its values (separators, the per-row work), and the
#: width taken for a value whose type declares none: a long text, or a number or key of a few
#: characters
_ROW_CHARS = 32
_UNBOUNDED_TEXT_CHARS = 256
_OTHER_VALUE_CHARS = 16
_DECLARED_LENGTH = re.compile(r"\((\d+)")


def _value_chars(column_type: str) -> int:
    """About how many characters a full scan reads of one value of `column_type`: its declared
    length (capped at a long text's), a long text's when it declares none."""
    declared = _DECLARED_LENGTH.search(column_type)
    if declared and _TEXT_TYPE.search(column_type):
        return min(int(declared.group(1)), _UNBOUNDED_TEXT_CHARS)
    if _TEXT_TYPE.search(column_type) or _BINARY_TYPE.search(column_type):
        return _UNBOUNDED_TEXT_CHARS
    return _OTHER_VALUE_CHARS


def _scan_weight(info: TableInfo) -> int:
    """About how many characters a full scan of the table reads: rows times the widths of the
    columns it reads (a TEXT column weighs more than a status code, a long table of dates and
    flags little). Workers take the heaviest first, so the two end close together."""
    read_names = set(full_scan_columns(info))
    # integers too short for an identifier are not read where the dialect says so (`_full_hits`);
    # a table of such ids and dates costs its sample only
    read = [c for c in info.columns if c.name in read_names and not _TOO_SHORT_FOR_IDS.match(c.type or "")]
    if not read:
        return 0
    return max(info.row_count, 0) * (_ROW_CHARS + sum(_value_chars(c.type or "") for c in read))


def _classify_table_task(
    engine: sa.Engine, info: TableInfo, sample_size: int, full: bool, own_contacts: frozenset, minors: tuple
) -> tuple[list, MinorCount | None]:
    """The findings of one table, and its minors (`_minors_of_own_rows`) when `minors` =
    (tables counted by their worker, people's tables only, closure date) says so."""
    alone, people_only, closure_date = minors
    counted = info.qualified_name in alone
    early: list = []  # (age column names, result) of the count started beside the full scan

    def count_beside(sampled: list[ColumnFinding]) -> None:
        # the sample's age columns are almost always the final ones: their minors are counted on
        # a connection of their own while the table is scanned (the server's count was waited
        # for after the scan, last of all in a worker's last table); used only if the final
        # findings name the same columns, so the count is the one made afterwards
        if not _side_by_side(engine) or people_only and not _is_person_table(sampled):
            return
        columns = _age_columns(ClassificationResult(source_id="", columns=sampled), info.qualified_name)
        if columns == (None, None):
            return
        names = tuple(f.column if f else None for f in columns)
        copies = [dataclasses.replace(f) if f else None for f in columns]  # the scan changes its own
        early.append((names, _beside(lambda: _minors_by_columns(engine, info, *copies, closure_date))))

    findings = classify_table(
        engine,
        info,
        sample_size=sample_size,
        full=full,
        own_contacts=own_contacts,
        after_sample=count_beside if counted else None,
    )
    beside = None  # (age column names, count) of the count made beside the scan, if it succeeded
    if early:
        names, count = early[0]
        try:  # waited for in any case: no query is left running on its connection
            beside = (names, count())
        except Exception:  # noqa: BLE001 - counted again below, where a failure shows as before
            beside = None
    if not counted or (people_only and not _is_person_table(findings)):
        return findings, None
    columns = _age_columns(ClassificationResult(source_id="", columns=findings), info.qualified_name)
    if beside is not None and beside[0] == tuple(f.column if f else None for f in columns):
        return findings, beside[1]
    return findings, _minors_of_own_rows(engine, info, findings, closure_date)


def _full_hits_task(engine: sa.Engine, info: TableInfo) -> dict[str, int]:
    """Column -> values holding a personal identifier, columns with hits only."""
    found, _ = _full_hits(engine, info, full_scan_columns(info))
    return {col: counter["_any"] for col, counter in found.items() if counter["_any"]}


def full_scan_hits(engine: sa.Engine, inventory: SourceInventory) -> dict[tuple[str, str], int]:
    """(table, column) -> number of values holding a valid personal identifier, over EVERY value
    of every column a full scan reads. Only columns with hits; {} = nothing found."""
    hits: dict[tuple[str, str], int] = {}
    # tables side by side in worker processes for a large source (parallel.workers_for)
    for info, found in zip(
        inventory.tables,
        parallel.map_tables(engine, inventory.tables, _full_hits_task, reason=_reason, weight=_scan_weight),
        strict=True,
    ):
        if isinstance(found, parallel.TableFailure):
            raise _source_error(inventory.source_id, engine, "full scan", found.reason)
        hits.update({(info.qualified_name, col): n for col, n in found.items()})
    log.info(
        "full scan of %s: %d columns hold identifiers (%d values)",
        inventory.source_id,
        len(hits),
        sum(hits.values()),
    )
    return hits
