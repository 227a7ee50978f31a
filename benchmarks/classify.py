"""Benchmark of the classification engine, side by side with its anchors in one run; prints ratios.

1. Scanner throughput against Microsoft Presidio's AnalyzerEngine, both run over the same labelled
   values (resident IDs, mobiles, e-mails, bank cards, landlines, passports, IPv4 addresses, alone
   and inside Chinese remarks, plus decoys: order numbers, invalid-checksum IDs, 11-digit numbers
   starting 10/12, prices, course codes). Presidio gets pattern recognizers for the same kinds with
   checksum validation and a blank spaCy pipeline saved to disk as its NLP engine (no model can be
   downloaded). Recall and precision of both are printed per category; goal: at least 20 times
   Presidio's values per second at equal or better recall.
2. A full scan of the PostgreSQL demo school at scale (`benchmarks/pgdata.py`: 200,000 students,
   2,000,000 attendance rows) against `pg_dump` of the same database in plain format to /dev/null.
   Goal: at most 2 times pg_dump's time.
3. Peak RSS of the full scan at a tenth, a half and all of --students: memory must stay flat as
   tables grow (at most 1.25 times from half to full size).

4. One large cell: the scanner over 4 MB of remarks as short lines and as one cell (same findings,
   ratio of times; goal <= 1.5x), and a PostgreSQL table with one 200 MB cell full-scanned in a
   child process (peak RSS; goal < 400 MiB).
5. The realworld packs (../shared/realworld: pagila on PostgreSQL, mall on MariaDB): column recall
   and precision against each truth.json, in sample and full mode (goal >= 0.95 each), and beside
   them Presidio's on the same columns and the same sampled values (PRESIDIO_COLUMN_RULE).

    python -m benchmarks.classify [--students N] [--values N] [--quick] [--only cell|realworld]

Needs `benchmarks/requirements-bench.txt` (presidio-analyzer, spaCy) in the venv: `make bench-classify`
installs it. Nothing here is part of `make test`; nothing printed holds a raw value.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from benchmarks import own_peak_mib
from dereg.config import state_dir
from devtools.demo.seed import NOTE_TEXTS, bank_card, mobile, resident_id

# Presidio's e-mail recognizer asks tldextract for the public suffix list, which it fetches from the
# internet first: without internet every fetch failed with a logged traceback before it fell back to
# the list shipped with it. No URLs: the shipped list at once, the same verdicts, no noise.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

#: the kinds both sides are asked to find, as our taxonomy names them
CATEGORIES = ("cn_resident_id", "cn_mobile", "email", "bank_card", "phone", "passport", "ip_address")
THROUGHPUT_GOAL = 20.0  # times Presidio's values per second
PG_DUMP_GOAL = 2.0  # at most this many times pg_dump's time (issue 16)
FLAT_RSS = 1.25  # peak RSS at twice the rows may grow by at most this factor to count as flat
SEED = 20261123


# --- the labelled values ------------------------------------------------------------------------

AREA_CODES = ("010", "020", "021", "022", "023", "024", "025", "027", "028", "029", "0755", "0571", "0512")
EMAIL_LOCALS = ("zhangwei", "li.na", "wang_fang", "liuyang", "chen.jing", "yang-lei", "zhaomin", "huang.li")
EMAIL_DOMAINS = ("example.com", "example.cn", "qq.com", "163.com", "126.com", "foxmail.com", "sina.com.cn")
TEMPLATES = (  # free text quoting identifiers, as remarks in Chinese school and shop databases do
    ("家长手机：{cn_mobile}，已电话沟通。", ("cn_mobile",)),
    ("退费申请人身份证号{cn_resident_id}，待财务核对。", ("cn_resident_id",)),
    ("请将电子发票发送至{email}，谢谢。", ("email",)),
    ("退款已原路退回银行卡{bank_card}，请注意查收。", ("bank_card",)),
    ("前台座机{phone}，工作日9点到18点。", ("phone",)),
    ("护照号码{passport}，游学签证办理中。", ("passport",)),
    ("登录来源IP {ip_address}，非常用地点，已提醒家长。", ("ip_address",)),
    ("联系人手机{cn_mobile}，邮箱{email}", ("cn_mobile", "email")),
    (
        "身份证{cn_resident_id}，银行卡{bank_card}，手机{cn_mobile}。",
        ("cn_resident_id", "bank_card", "cn_mobile"),
    ),
    (
        '{{"guardian": {{"tel": "{cn_mobile}", "id_no": "{cn_resident_id}"}}}}',
        ("cn_mobile", "cn_resident_id"),
    ),
)
DECOY_TEMPLATES = (  # remarks with numbers that are no personal identifier
    "订单号{order}已发货，实付¥{price}。",
    "课程编号{course}，共{lessons}课时，单价{price}元。",
    "学号{eleven}，班级{lessons}班。",
    "身份证号{bad_id}校验位不对，请家长重新提供。",
    "快递单号{eleven}，{day}签收。",
    "版本{version}已上线，订单{order}补发。",
)


def _birth(rng: random.Random) -> date:
    return date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 60))


def _positive(rng: random.Random, category: str) -> str:
    """A valid identifier of `category`, written the ways people write it."""
    if category == "cn_resident_id":
        return resident_id(rng, _birth(rng), rng.random() < 0.5)
    if category == "cn_mobile":
        number = mobile(rng)
        return rng.choice(
            (
                number,
                number,
                f"{number[:3]}-{number[3:7]}-{number[7:]}",
                f"+86 {number[:3]} {number[3:7]} {number[7:]}",
                f"0086{number}",
            )
        )
    if category == "email":
        return f"{rng.choice(EMAIL_LOCALS)}{rng.randrange(1000)}@{rng.choice(EMAIL_DOMAINS)}"
    if category == "bank_card":
        card = bank_card(rng)
        return card if rng.random() < 0.7 else " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    if category == "phone":
        area = rng.choice(AREA_CODES)
        local = str(rng.randint(2, 8)) + "".join(
            rng.choice("0123456789") for _ in range(7 if len(area) == 3 else rng.choice((6, 7)))
        )
        return rng.choice((f"{area}-{local}", f"{area}-{local}", f"({area}){local}", f"{area} {local}"))
    if category == "passport":
        digits = f"{rng.randrange(10**7):07d}"
        return rng.choice((f"E{rng.randrange(10)}{digits}", f"G{rng.randrange(10)}{digits}", f"EA{digits}"))
    if category == "ip_address":
        if rng.random() < 0.5:
            return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        first = rng.choice([n for n in range(1, 224) if n != 127])  # loopback identifies no one
        return ".".join([str(first)] + [str(rng.randint(1, 223)) for _ in range(3)])
    raise ValueError(f"no generator for category {category}")


def _bad_id(rng: random.Random) -> str:
    good = resident_id(rng, _birth(rng), rng.random() < 0.5)
    return good[:17] + rng.choice([c for c in "0123456789X" if c != good[17]])


def _decoys(rng: random.Random) -> dict[str, str]:
    card_like = bank_card(rng)
    wrong = str((int(card_like[-1]) + rng.randint(1, 9)) % 10)
    return {
        # order numbers are timestamps: they start 20xx, and "20" is no province, 1530... no birth year
        "order": f"{2024 + rng.randrange(3)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        f"{rng.randrange(24):02d}{rng.randrange(60):02d}{rng.randrange(10**6):06d}",
        "bad_id": _bad_id(rng),
        "eleven": rng.choice(("10", "12")) + f"{rng.randrange(10**9):09d}",
        "price": rng.choice(("3,600.00", "4800.00", "1234567.89", "299", "12,800")),
        "course": f"{rng.choice(('CS', 'ENG', 'MATH', 'ART'))}{2024 + rng.randrange(3)}-{rng.randrange(10**4):04d}",
        "lessons": str(rng.choice((12, 24, 48))),
        "day": f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
        "version": f"{rng.randrange(10)}.{rng.randrange(20)}.{rng.randrange(100)}",
        "card_bad_luhn": card_like[:-1] + wrong,
        "bad_ip": f"{rng.randint(256, 999)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
    }


def labelled_values(n: int, seed: int = SEED) -> list[tuple[str, frozenset[str]]]:
    """`n` values with the categories each truly holds: 35% identifiers alone (5% per kind), 25%
    remarks quoting identifiers, 20% decoy values, 20% remarks without identifiers."""
    rng = random.Random(seed)
    values: list[tuple[str, frozenset[str]]] = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.35:
            category = CATEGORIES[int(roll / 0.05)]
            values.append((_positive(rng, category), frozenset({category})))
        elif roll < 0.60:
            template, cats = rng.choice(TEMPLATES)
            values.append((template.format(**{c: _positive(rng, c) for c in cats}), frozenset(cats)))
        elif roll < 0.80:
            decoy = _decoys(rng)
            key = rng.choice(
                ("order", "bad_id", "eleven", "price", "course", "card_bad_luhn", "bad_ip", "version")
            )
            values.append((decoy[key], frozenset()))
        else:
            decoy = _decoys(rng)
            if rng.random() < 0.5:
                values.append((rng.choice(DECOY_TEMPLATES).format(**decoy), frozenset()))
            else:
                values.append((rng.choice(NOTE_TEXTS).format(day=decoy["day"]), frozenset()))
    return values


def project_corpus_values(n: int, seed: int = SEED) -> list[tuple[str, frozenset[str]]]:
    """About `n` text values of the project's labelled corpus (`devtools.demo.corpus`), each with the
    categories of CATEGORIES it truly holds: a structured column's own categories, a remark's
    embedded ones, nothing for its decoy columns (order numbers, credit codes, bad IDs, ...)."""
    from devtools.demo.corpus import build_corpus

    probe = build_corpus(rows=1, seed=seed)
    text_columns = sum(1 for t in probe.tables for c in t.columns if c.type == "text")
    corpus = build_corpus(rows=max(1, -(-n // text_columns)), seed=seed)
    kinds = set(CATEGORIES)
    values = []
    for table in corpus.tables:
        for column in table.columns:
            if column.type != "text":
                continue
            for i, value in enumerate(column.values):
                if value is None or value == "":
                    continue
                truth = (
                    {c for c, _ in column.embedded[i]} if column.embedded is not None else column.categories
                )
                values.append((str(value), frozenset(truth & kinds)))
    return values


def corpus_values(name: str, n: int) -> tuple[str, list[tuple[str, frozenset[str]]]]:
    """(description, labelled values) of the corpus called `name`: "project" or "synthetic"."""
    if name == "project":
        return "the project's labelled corpus (devtools.demo.corpus: three tables, decoy columns)", (
            project_corpus_values(n)
        )
    return "the benchmark's own mix (labelled_values: 35% alone, 25% remarks, 40% decoys/plain)", (
        labelled_values(n)
    )


@dataclass
class Score:
    """Per-category recall and precision over (value, category) pairs."""

    tp: Counter
    fp: Counter
    fn: Counter

    @classmethod
    def of(cls, truth: Sequence[frozenset[str]], found: Sequence[set[str]]) -> Score:
        tp, fp, fn = Counter(), Counter(), Counter()
        for want, got in zip(truth, found, strict=True):
            for c in got & want:
                tp[c] += 1
            for c in got - want:
                fp[c] += 1
            for c in want - got:
                fn[c] += 1
        return cls(tp, fp, fn)

    def recall(self, c: str | None = None) -> float:
        tp = self.tp[c] if c else sum(self.tp.values())
        fn = self.fn[c] if c else sum(self.fn.values())
        return tp / (tp + fn) if tp + fn else 1.0

    def precision(self, c: str | None = None) -> float:
        tp = self.tp[c] if c else sum(self.tp.values())
        fp = self.fp[c] if c else sum(self.fp.values())
        return tp / (tp + fp) if tp + fp else 1.0


# --- our side -----------------------------------------------------------------------------------


def our_scanner() -> tuple[str, Callable[[list[str]], object], Callable[[str], set[str]]]:
    """(name, batch function timed for throughput, per-value categories for recall/precision).
    Uses the engine's batch `scan_values` when there is one, else `find_in_text` per value."""
    from dereg.classify import engine

    try:
        from dereg.classify.scanner import scan_values
    except ImportError:
        scan_values = getattr(engine, "scan_values", None)

    kinds = set(CATEGORIES)

    def categories(text: str) -> set[str]:  # only the kinds both sides are asked for
        return {cat for cat, _ in engine.find_in_text(text)} & kinds

    if scan_values is not None:
        return f"{scan_values.__module__}.scan_values", scan_values, categories

    def per_value(texts: list[str]) -> None:
        for text in texts:
            engine.find_in_text(text)

    return "dereg.classify.engine.find_in_text per value", per_value, categories


def our_categories() -> set[str]:
    """Categories our engine detects inside values today."""
    from dereg.classify import DETECTORS

    return {d.CATEGORY for d in DETECTORS}


# --- Presidio's side ----------------------------------------------------------------------------

ENTITY_CATEGORY = {
    "CN_RESIDENT_ID": "cn_resident_id",
    "CN_MOBILE": "cn_mobile",
    "EMAIL_ADDRESS": "email",
    "BANK_CARD": "bank_card",
    "CN_LANDLINE": "phone",
    "CN_PASSPORT": "passport",
    "IP_ADDRESS": "ip_address",
}
_EDGE_L = r"(?<![0-9A-Za-z_])"  # Chinese characters are word characters: \b would miss 手机138...
_EDGE_R = r"(?![0-9A-Za-z_])"
CARD_PREFIXES = ("62", "60", "65", "4", "51", "52", "53", "54", "55", "35", "37", "94", "95", "98", "99")


_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)


def resident_id_ok(text: str) -> bool:
    """GB 11643 for Presidio's side, written here: stdnum's cn.ric raises KeyError for some region
    codes, which would cost Presidio recall that is not its own fault. Check digit (ISO 7064 MOD
    11-2), a province prefix and a real birth date; the old 15-digit form without check digit."""
    number = text.upper()
    if len(number) == 18:
        if not number[:17].isdigit():
            return False
        total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(number[:17]))
        if "10X98765432"[total % 11] != number[17]:
            return False
        year, month, day = int(number[6:10]), int(number[10:12]), int(number[12:14])
    elif len(number) == 15 and number.isdigit():
        year, month, day = 1900 + int(number[6:8]), int(number[8:10]), int(number[10:12])
    else:
        return False
    try:
        born = date(year, month, day)
    except ValueError:
        return False
    return number[:2] in _PROVINCES and date(1900, 1, 1) <= born <= date.today()


def _with_check_digit(number: str) -> str:
    """`number` with its 18th character replaced by the right GB 11643 check digit."""
    if not number[:17].isdigit():
        return number
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(number[:17]))
    return number[:17] + "10X98765432"[total % 11]


def _compact(text: str) -> str:
    return "".join(ch for ch in text if ch not in " -()")


def presidio_recognizers(language: str) -> list:
    """Pattern recognizers for the same kinds, check digits validated (Luhn by python-stdnum)."""
    from presidio_analyzer import Pattern, PatternRecognizer
    from stdnum import luhn

    class ResidentId(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return resident_id_ok(pattern_text)

    class BankCard(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            number = _compact(pattern_text)
            mastercard = number.startswith(("51", "52", "53", "54", "55")) or 2221 <= int(number[:4]) <= 2720
            if mastercard:
                length_ok = len(number) == 16
            else:
                length_ok = len(number) in (16, 19) if number.startswith("4") else True
            known = number.startswith(CARD_PREFIXES) or mastercard
            return known and length_ok and luhn.is_valid(number)

        def invalidate_result(self, pattern_text: str) -> bool:
            # an ID number may pass Luhn too, and so may one with a mistyped check digit: 18 digits
            # with a province and a real birth date where an ID has them are taken for an ID
            number = _compact(pattern_text)
            return resident_id_ok(number) or (len(number) == 18 and resident_id_ok(_with_check_digit(number)))

    class IPAddress(PatternRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            try:
                ipaddress.ip_address(pattern_text)
            except ValueError:
                return False
            return True

    def make(cls, entity: str, regex: str, score: float = 0.5):
        return cls(
            supported_entity=entity,
            name=f"{entity.title().replace('_', '')}Recognizer",
            patterns=[Pattern(entity.lower(), regex, score)],
            supported_language=language,
        )

    return [
        make(ResidentId, "CN_RESIDENT_ID", rf"{_EDGE_L}(?:\d{{17}}[0-9Xx]|\d{{15}}){_EDGE_R}"),
        make(
            BankCard,
            "BANK_CARD",
            rf"{_EDGE_L}(?:\d{{16,19}}|\d{{4}}(?:[ -]\d{{4}}){{3}}(?:[ -]?\d{{1,3}})?){_EDGE_R}",
        ),
        make(
            PatternRecognizer,
            "CN_MOBILE",
            r"(?<![0-9A-Za-z_+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _EDGE_R,
            0.6,
        ),
        make(
            PatternRecognizer,
            "EMAIL_ADDRESS",
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])",
            0.6,
        ),
        make(
            PatternRecognizer,
            "CN_LANDLINE",
            r"(?<![0-9A-Za-z_+])(?:(?:\+|00)86[ -]?)?(?:\(0\d{2,3}\) ?|0\d{2,3}[ -]?)[2-8]\d{2,3}[ -]?\d{4}"
            + _EDGE_R,
            0.4,
        ),
        make(  # passports, Hong Kong/Macau permits both ways, Taiwan permits after their label
            PatternRecognizer,
            "CN_PASSPORT",
            rf"{_EDGE_L}(?:[EG]\d{{8}}|[EC][A-HJ-NP-Z]\d{{7}}|C\d{{8}}|[HM]\d{{8}}(?:\d{{2}})?){_EDGE_R}"
            rf"|(?:台胞证|台湾居民来往大陆通行证)(?:号码?)?[:：\s]*\d{{8}}{_EDGE_R}",
            0.4,
        ),
        make(
            IPAddress,
            "IP_ADDRESS",
            r"(?<![0-9A-Za-z_.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z_]|\.\d)"
            r"|(?<![0-9A-Za-z_:])(?:[0-9A-Fa-f]{1,4}:){1,7}:?(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?"
            r"(?![0-9A-Za-z_:])",
        ),
    ]


def _resolve_overlaps(results: list) -> list:
    """Drop a result lying inside another entity's result of at least its score, as Presidio's
    anonymizer resolves conflicts (the analyzer leaves overlaps of different types): a landline
    read inside a grouped 19-digit card number is no landline."""
    return [
        r
        for r in results
        if not any(
            o is not r
            and o.entity_type != r.entity_type
            and o.start <= r.start
            and r.end <= o.end
            and o.score >= r.score
            for o in results
        )
    ]


def blank_pipeline(language: str) -> Path:
    """A blank spaCy pipeline (tokenizer only) saved under .state/bench/, built once."""
    import spacy

    path = state_dir() / "bench" / f"spacy-blank-{language}"
    if not (path / "config.cfg").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        spacy.blank(language).to_disk(path)
    return path


def presidio_analyzer(language: str):
    """Presidio's AnalyzerEngine with only our pattern recognizers and the blank pipeline as NLP."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    model = blank_pipeline(language)
    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": str(model)}],
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=[language])
    for recognizer in presidio_recognizers(language):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


# --- part 1: throughput and accuracy ------------------------------------------------------------


def _best_rate(run: Callable[[], object], n: int, min_seconds: float) -> float:
    """Values per second of the fastest of repeated runs, repeated for at least `min_seconds`."""
    best = float("inf")
    spent = 0.0
    while spent < min_seconds or best == float("inf"):
        started = time.perf_counter()
        run()
        took = time.perf_counter() - started
        best = min(best, took)
        spent += took
    return n / best


def bench_throughput(n_values: int, languages: Sequence[str], corpus: str = "project") -> dict:
    description, labelled = corpus_values(corpus, n_values)
    texts = [t for t, _ in labelled]
    truth = [c for _, c in labelled]
    print(
        f"\n== 1. scanner vs Presidio: {len(texts):,} labelled values "
        f"({sum(1 for c in truth if c):,} hold identifiers, {sum(len(c) for c in truth):,} labels) =="
    )
    print(f"corpus: {description}")

    name, batch, categories = our_scanner()
    ours_found = [categories(t) for t in texts]
    ours_rate = _best_rate(lambda: batch(texts), len(texts), 2.0)

    # Presidio's best honest configuration: each blank pipeline, each API; the fastest counts.
    from presidio_analyzer import BatchAnalyzerEngine

    rates: dict[str, float] = {}
    presidio_found: list[set[str]] | None = None
    for language in languages:
        started = time.perf_counter()
        analyzer = presidio_analyzer(language)
        analyzer.analyze(text="预热 warm-up 13812345678", language=language)  # lazy loads, not timed
        print(
            f"Presidio setup, blank '{language}' pipeline loaded from disk: {time.perf_counter() - started:.1f} s"
        )
        batch_engine = BatchAnalyzerEngine(analyzer_engine=analyzer)

        def each(analyzer=analyzer, language=language) -> list[list]:
            return [analyzer.analyze(text=t, language=language) for t in texts]

        def batched(batch_engine=batch_engine, language=language) -> list[list]:
            return batch_engine.analyze_iterator(texts, language=language, batch_size=256)

        for api, run in (("analyze() per value", each), ("BatchAnalyzerEngine", batched)):
            started = time.perf_counter()
            results = run()
            rates[f"{api}, blank '{language}'"] = len(texts) / (time.perf_counter() - started)
            found = [{ENTITY_CATEGORY[r.entity_type] for r in _resolve_overlaps(one)} for one in results]
            if presidio_found is not None and found != presidio_found:
                raise AssertionError("Presidio's configurations disagree on the same values")
            presidio_found = found
    presidio_label = max(rates, key=rates.get)
    presidio_rate = rates[presidio_label]

    ours, theirs = Score.of(truth, ours_found), Score.of(truth, presidio_found)
    detected = our_categories()
    print(f"ours:     {name}")
    print(f"Presidio: {presidio_label}, 7 pattern recognizers with check-digit validation")
    print(
        f"{'category':<16}{'labels':>8}  {'recall ours':>11} {'Presidio':>9}  {'precision ours':>14} {'Presidio':>9}"
    )
    for c in CATEGORIES:
        labels = ours.tp[c] + ours.fn[c]
        note = "" if c in detected else "  (no detector of ours yet)"
        print(
            f"{c:<16}{labels:>8}  {ours.recall(c):>11.4f} {theirs.recall(c):>9.4f}  "
            f"{ours.precision(c):>14.4f} {theirs.precision(c):>9.4f}{note}"
        )
    print(
        f"{'all':<16}{sum(len(c) for c in truth):>8}  {ours.recall():>11.4f} {theirs.recall():>9.4f}  "
        f"{ours.precision():>14.4f} {theirs.precision():>9.4f}"
    )
    for label, rate in rates.items():
        print(f"Presidio {label}: {rate:,.0f} values/s")
    print(f"ours: {ours_rate:,.0f} values/s")
    ratio = ours_rate / presidio_rate
    recall_ok = all(ours.recall(c) >= theirs.recall(c) for c in CATEGORIES)
    print(
        f"RATIO throughput ours/Presidio = {ratio:.1f}x (goal >= {THROUGHPUT_GOAL:.0f}x: "
        f"{'met' if ratio >= THROUGHPUT_GOAL else 'NOT met'}); recall >= Presidio's in every category: "
        f"{'yes' if recall_ok else 'NO'}"
    )
    return {"ratio": ratio, "recall_ok": recall_ok, "ours_rate": ours_rate, "presidio_rate": presidio_rate}


# --- parts 2 and 3: full scan vs pg_dump, peak RSS ----------------------------------------------


def database_url(base: str, students: int, default_students: int = 200_000) -> str:
    """The benchmark database for `students`: the default name at the default size, else suffixed."""
    url = sa.make_url(base)
    if students == default_students:
        return url.render_as_string(hide_password=False)
    return url.set(database=f"{url.database}_{students}").render_as_string(hide_password=False)


def _run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """(wall seconds, peak RSS in MiB) of one command. The peak comes from GNU time's %M: a child
    forked from this Python process would inherit its high-water mark across exec (Linux keeps
    the pre-exec RSS in ru_maxrss), so wait4/RUSAGE_CHILDREN here would report at least our own."""
    gnu_time = "/usr/bin/time"
    if not os.access(gnu_time, os.X_OK):
        raise SystemExit("peak RSS needs GNU time at /usr/bin/time: apt-get install time")
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        log_file = Path(tmp) / "out"
        with log_file.open("wb") as out:
            started = time.perf_counter()
            code = subprocess.call(
                [gnu_time, "-f", "%M", "-o", str(rss_file), *cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
            took = time.perf_counter() - started
        if code != 0:
            tail = log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(cmd[:2])} exited {code}:\n{tail}")
        kib = int(rss_file.read_text().split()[-1])
    return took, kib // 1024


def _scan_command(url: str, json_path: Path) -> tuple[str, list[str]]:
    """Our full scan as a separate process: the CLI's `dereg scan --full` when it exists, else the
    engine's full_scan_hits over the inventory (the post-erasure check)."""
    from dereg import cli

    if "scan" in getattr(cli, "COMMANDS", {}):
        dereg = shutil.which("dereg", path=str(Path(sys.executable).parent)) or "dereg"
        return "dereg scan --full", [dereg, "scan", url, "--full", "--json", str(json_path)]
    return "engine.full_scan_hits", [sys.executable, "-m", "benchmarks.classify", "--scan-child", url]


def _pg_dump_command(url: str) -> list[str]:
    u = sa.make_url(url)
    cmd = ["pg_dump", "--format=plain", "--file=/dev/null", f"--dbname={u.database}"]
    cmd += [
        f"--host={u.host or '127.0.0.1'}",
        f"--port={u.port or 5432}",
        f"--username={u.username or 'postgres'}",
    ]
    return cmd


def _pg_env(url: str) -> dict:
    env = dict(os.environ)
    password = sa.make_url(url).password
    if password:
        env["PGPASSWORD"] = str(password)
    return env


def scan_child(url: str) -> int:
    """Run inside the measured child process: inventory and full scan; print counts only."""
    from dereg.classify.engine import full_scan_hits
    from dereg.inventory.sql import inventory_source

    engine = sa.create_engine(url)
    try:
        hits = full_scan_hits(engine, inventory_source(engine, "bench"))
    finally:
        engine.dispose()
    print(f"{len(hits)} columns hold identifiers ({sum(hits.values())} values)")
    return 0


def bench_database(base_url: str, students: int, rounds: int) -> dict:
    from benchmarks.pgdata import ensure

    # Three sizes: a tenth, a half and all of --students. The scan holds a few blocks of about
    # 4 MiB each, so memory reaches its plateau once tables fill whole blocks; the step from half
    # to full size shows whether it then stays flat, the step from a tenth how far it climbs first.
    steps = sorted({max(students // 10, 1000), max(students // 2, 1000), students})
    small, half = steps[0], steps[-2] if len(steps) > 1 else steps[0]
    print(
        f"\n== 2. full scan vs pg_dump, and 3. peak RSS at {', '.join(f'{n:,}' for n in steps)} students =="
    )
    sizes = {}
    for n in steps:
        url = database_url(base_url, n)
        started = time.perf_counter()
        counts = ensure(url, n)
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
        finally:
            engine.dispose()
        sizes[n] = url
        print(
            f"database {sa.make_url(url).database}: {sum(counts.values()):,} rows "
            f"({', '.join(f'{k} {v:,}' for k, v in counts.items())}), {size / 2**20:,.0f} MiB on disk"
            f" (ready in {time.perf_counter() - started:.1f} s)"
        )

    from dereg.classify import parallel, scanner

    print(
        "candidate search: "
        + (
            "native (Hyperscan), re inside its regions"
            if scanner._regions_finder() is not None
            else "Python re"
        )
        + f"; tables in up to {parallel.MAX_WORKERS} worker processes from {parallel.PARALLEL_MIN_ROWS:,} rows"
        + (
            f" (DEREG_SCAN_WORKERS={os.environ['DEREG_SCAN_WORKERS']})"
            if os.environ.get("DEREG_SCAN_WORKERS")
            else ""
        )
    )
    results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n, url in sizes.items():
            label, scan_cmd = _scan_command(url, Path(tmp) / "scan.json")
            scans, dumps = [], []
            for _ in range(rounds):  # alternate, keep the best of each: the machine is shared
                dumps.append(_run_measured(_pg_dump_command(url), _pg_env(url)))
                scans.append(_run_measured(scan_cmd))
            results[n] = {
                "scan": min(s[0] for s in scans),
                "scan_rss": max(s[1] for s in scans),
                "dump": min(d[0] for d in dumps),
                "dump_rss": max(d[1] for d in dumps),
                "label": label,
            }
            r = results[n]
            print(
                f"{n:>9,} students: ours ({label}) {r['scan']:.1f} s, peak RSS {r['scan_rss']} MiB; "
                f"pg_dump {r['dump']:.1f} s, peak RSS {r['dump_rss']} MiB "
                f"(best of {rounds}; all runs ours {', '.join(f'{s[0]:.1f}' for s in scans)} s, "
                f"pg_dump {', '.join(f'{d[0]:.1f}' for d in dumps)} s)"
            )
    big = results[students]
    ratio = big["scan"] / big["dump"]
    growth = big["scan_rss"] / results[half]["scan_rss"]
    climb = big["scan_rss"] / results[small]["scan_rss"]
    print(
        f"RATIO full scan / pg_dump at {students:,} students = {ratio:.2f}x "
        f"(goal <= {PG_DUMP_GOAL:.0f}x: {'met' if ratio <= PG_DUMP_GOAL else 'NOT met'})"
    )
    print(
        f"RATIO peak RSS {students:,} / {half:,} students = {growth:.2f}x for {students / half:.0f}x the rows "
        f"({'flat' if growth <= FLAT_RSS else 'NOT flat'}: goal <= {FLAT_RSS}x); "
        f"{students:,} / {small:,} students = {climb:.2f}x for {students / small:.0f}x the rows"
    )
    return {"ratio": ratio, "rss_growth": growth}


# --- 4. one large cell ---------------------------------------------------------------------------

CELL_GOAL = 1.5  # a huge cell within this many times the same bytes as short lines
CELL_RSS_GOAL_MIB = 400  # peak RSS of the full scan of a table with one 200 MB cell


def _cell_records(target_bytes: int, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    records: list[str] = []
    size = 0
    while size < target_bytes:
        kind = rng.choice(CATEGORIES[:5])
        template, kinds = rng.choice(
            [t for t in TEMPLATES if len(t[1]) == 1 and t[1][0] == kind] or [TEMPLATES[0]]
        )
        text = template.format(**{k: _positive(rng, k) for k in kinds})
        records.append(text)
        size += len(text.encode()) + 1
    return records


def bench_large_cell(megabytes: int = 4) -> dict:
    """The scanner over `megabytes` MB of remarks as short lines and as one cell (the same bytes,
    spaces for line breaks); the same findings in both, and the ratio of the times."""
    from dereg.classify.scanner import scan_block

    records = _cell_records(megabytes << 20)
    short = "\n".join(records) + "\n"
    cell = " ".join(records) + "\n"
    print(f"\n== 4. one large cell: {len(cell.encode()) / (1 << 20):.1f} MB, {len(records):,} remarks ==")

    def timed(block: str) -> tuple[float, list]:
        best, found = float("inf"), []
        for _ in range(3):
            started = time.perf_counter()
            found = [(c, v) for _, _, c, v in scan_block(block)]
            best = min(best, time.perf_counter() - started)
        return best, found

    lines_s, lines_found = timed(short)
    cell_s, cell_found = timed(cell)
    ratio = cell_s / lines_s
    same = lines_found == cell_found
    print(f"short lines: {lines_s:.2f} s, {len(lines_found):,} hits")
    print(f"one cell:    {cell_s:.2f} s, {len(cell_found):,} hits (same findings: {'yes' if same else 'NO'})")
    print(
        f"RATIO one cell / short lines = {ratio:.2f}x (goal <= {CELL_GOAL}x: {'met' if ratio <= CELL_GOAL else 'NOT met'})"
    )
    return {"ratio": ratio, "same": same}


def huge_cell_child(url: str) -> int:
    """In a child process: full-scan the table `huge_cell` of `url`; print peak RSS (MiB)."""
    from dereg.classify.engine import classify_table
    from dereg.inventory.sql import inventory_source

    engine = sa.create_engine(url)
    inventory = inventory_source(engine, "bench")
    info = next(t for t in inventory.tables if t.name == "huge_cell")
    started = time.perf_counter()
    findings = classify_table(engine, info, full=True)
    took = time.perf_counter() - started
    hits = sum(f.matches for f in findings if f.personal)
    print(f"{own_peak_mib()} {took:.1f} {hits}")
    return 0


def bench_huge_cell(base_url: str, megabytes: int) -> dict:
    """A PostgreSQL table with one `megabytes` MB text cell, full-scanned in a child process: its
    peak RSS against the goal."""
    name = f"{sa.make_url(base_url).database}_huge_cell"  # beside the benchmark database, per --url
    url = sa.make_url(base_url).set(database=name)
    admin = sa.create_engine(sa.make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    print(f"\n== 4b. one {megabytes} MB cell in PostgreSQL, full scan in a child process ==")
    try:
        engine = sa.create_engine(url)
        records = _cell_records(1 << 20)
        piece = " ".join(records)
        repeat = max(1, (megabytes << 20) // len(piece.encode()))
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE huge_cell (id int PRIMARY KEY, remark text)")
            # built server-side in one statement: the client never holds the whole cell
            conn.execute(
                sa.text("INSERT INTO huge_cell SELECT 1, repeat(:p || ' ', :n)"), {"p": piece, "n": repeat}
            )
            size = conn.exec_driver_sql("SELECT octet_length(remark) FROM huge_cell").scalar_one()
        engine.dispose()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.classify",
                "--huge-cell-child",
                url.render_as_string(hide_password=False),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rss, took, hits = done.stdout.split()[-3:]
        rss_mib = int(rss)
        print(
            f"cell {int(size) / (1 << 20):.0f} MB: full scan {took} s, {hits} values with hits, peak RSS {rss_mib} MiB"
        )
        print(
            f"RATIO peak RSS / goal = {rss_mib / CELL_RSS_GOAL_MIB:.2f} (goal < {CELL_RSS_GOAL_MIB} MiB: "
            f"{'met' if rss_mib < CELL_RSS_GOAL_MIB else 'NOT met'})"
        )
        return {"rss_mib": rss_mib}
    finally:
        admin = sa.create_engine(sa.make_url(base_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --- 5. the realworld packs ------------------------------------------------------------------------

# DEREG_REALWORLD, else the nearest shared/realworld above this checkout (../shared/realworld)
REALWORLD = Path(
    os.environ.get("DEREG_REALWORLD")
    or next(
        (
            p / "shared" / "realworld"
            for p in Path(__file__).resolve().parents
            if (p / "shared" / "realworld").is_dir()
        ),
        Path(__file__).resolve().parents[2] / "shared" / "realworld",
    )
)


#: Presidio has no column verdict: a column is personal for Presidio when at least this share of
#: its non-empty sampled values (the same rows the engine's sample reads, at most
#: PRESIDIO_VALUES_PER_COLUMN of them) get at least one entity, and at least one value does.
PRESIDIO_COLUMN_SHARE = 0.10
PRESIDIO_VALUES_PER_COLUMN = 200
PRESIDIO_MIN_SCORE = 0.3  # an entity counts from this score (Presidio's phone numbers score 0.4)
PRESIDIO_COLUMN_RULE = (
    f"a column is personal for Presidio when >= {PRESIDIO_COLUMN_SHARE:.0%} of its non-empty sampled "
    f"values (the engine's sample rows, at most {PRESIDIO_VALUES_PER_COLUMN} per column) get an entity "
    f"scoring >= {PRESIDIO_MIN_SCORE}"
)


def presidio_columns(engine: sa.Engine, inventory, truth: dict, analyzer, language: str) -> list:
    """Presidio's verdict on every scored column of a pack (truth and clean), from the same sample
    rows the engine reads; objects with table, column and personal, as `quality.score` reads."""
    from types import SimpleNamespace

    from dereg.classify.engine import DEFAULT_SAMPLE_SIZE, sample_query

    scored: dict[str, set[str]] = {}
    for part in ("truth", "clean"):
        for table, columns in truth[part].items():
            scored.setdefault(table, set()).update(columns)
    verdicts = []
    for info in inventory.tables:
        wanted = scored.get(info.name)
        if not wanted:
            continue
        values: dict[str, list[str]] = {c: [] for c in wanted}
        with engine.connect() as conn:
            for row in conn.execute(sample_query(engine, info, DEFAULT_SAMPLE_SIZE)):
                for col, value in zip(info.columns, row, strict=True):
                    keep = values.get(col.name)
                    if keep is None or value is None or isinstance(value, bytes | memoryview):
                        continue
                    text = str(value).strip()
                    if text and len(keep) < PRESIDIO_VALUES_PER_COLUMN:
                        keep.append(text[:20_000])
        for column, texts in values.items():
            hits = sum(
                1
                for t in texts
                if _resolve_overlaps(
                    analyzer.analyze(text=t, language=language, score_threshold=PRESIDIO_MIN_SCORE)
                )
            )
            personal = bool(texts) and hits >= 1 and hits >= PRESIDIO_COLUMN_SHARE * len(texts)
            verdicts.append(SimpleNamespace(table=info.qualified_name, column=column, personal=personal))
    return verdicts


def bench_realworld() -> dict:
    """Column recall and precision on both realworld packs (loaded into the real servers with each
    pack's load.sh), in sample and full mode; scoring rules in dereg.classify.quality."""
    import datetime as dt
    import json
    import uuid

    from dereg.classify.engine import classify_source
    from dereg.classify.quality import score
    from dereg.inventory.sql import inventory_source

    print("\n== 5. realworld packs: column recall and precision against truth.json ==")
    import importlib.util

    analyzers = {}
    if importlib.util.find_spec("presidio_analyzer") is not None:
        analyzers["Presidio-7"] = presidio_analyzer("en")
        # and with every recognizer Presidio ships for English (phone numbers, credit cards, URLs,
        # dates, US ids...); its spaCy NER needs a model that cannot be downloaded here
        analyzers["Presidio-all"] = presidio_analyzer("en")
        analyzers["Presidio-all"].registry.load_predefined_recognizers(languages=["en"])
        print("Presidio-7: the 7 pattern recognizers of part 1, blank 'en' pipeline")
        print("Presidio-all: the same and every predefined English recognizer (no NER model)")
        print(f"Presidio's column verdict: {PRESIDIO_COLUMN_RULE}")
    else:
        print("Presidio: not installed in this venv (make bench-classify installs it); no comparison printed")
    packs = (
        ("pagila", "postgresql+psycopg2://postgres@127.0.0.1:5432/{db}", {}),
        ("mall", "mysql+pymysql://root@127.0.0.1:3306/{db}", {"PYTHON": sys.executable}),
    )
    out = {}
    for pack, url_pattern, env in packs:
        here = REALWORLD / pack
        if not (here / "load.sh").is_file():
            print(f"{pack}: not found under {REALWORLD} (set DEREG_REALWORLD)")
            continue
        db = f"dereg_bench_{pack}_{uuid.uuid4().hex[:6]}"
        subprocess.run(
            ["bash", str(here / "load.sh"), db], env={**os.environ, **env}, check=True, capture_output=True
        )
        truth = json.loads((here / "truth.json").read_text(encoding="utf-8"))
        engine = sa.create_engine(url_pattern.format(db=db))
        try:
            inventory = inventory_source(engine, pack)
            for mode in ("sample", "full"):
                started = time.perf_counter()
                result = classify_source(
                    engine,
                    inventory,
                    closure_date=dt.date(2026, 12, 31),
                    subject_table=None,
                    full=mode == "full",
                )
                s = score(result, truth)
                print(f"{pack:<7}{mode:<7}{s.line()}; {time.perf_counter() - started:.1f} s")
                out[(pack, mode)] = (s.recall, s.precision)
            for label, analyzer in analyzers.items():
                from types import SimpleNamespace

                started = time.perf_counter()
                columns = presidio_columns(engine, inventory, truth, analyzer, "en")
                p = score(SimpleNamespace(columns=columns), truth)
                print(f"{pack:<7}{label:<13}{p.line()}; {time.perf_counter() - started:.1f} s")
                if p.false:
                    print(f"{pack:<7}{label} false positives: {len(p.false)}")
                out[(pack, label)] = (p.recall, p.precision)
        finally:
            engine.dispose()
            if pack == "pagila":
                admin = sa.create_engine(url_pattern.format(db="postgres"), isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            else:
                admin = sa.create_engine(url_pattern.format(db=""))
                with admin.connect() as conn:
                    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{db}`")
            admin.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=200_000, help="students in the large database")
    parser.add_argument("--values", type=int, default=20_000, help="labelled values for part 1")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute")
    parser.add_argument("--url", default=None, help="PostgreSQL URL of the benchmark database")
    parser.add_argument(
        "--language", choices=("zh", "en"), action="append", help="Presidio's blank pipeline (default: both)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side in parts 2 and 3")
    parser.add_argument(
        "--corpus",
        choices=("project", "synthetic"),
        default="project",
        help="labelled values: the project's corpus (devtools.demo.corpus) or the benchmark's own mix",
    )
    parser.add_argument("--skip-presidio", action="store_true", help="parts 2 and 3 only")
    parser.add_argument("--skip-db", action="store_true", help="part 1 only")
    parser.add_argument("--skip-cell", action="store_true", help="skip part 4 (one large cell)")
    parser.add_argument(
        "--huge-cell-mb", type=int, default=200, help="part 4b: MB in one PostgreSQL cell (0: skip)"
    )
    parser.add_argument("--skip-realworld", action="store_true", help="skip part 5 (the realworld packs)")
    parser.add_argument("--only", choices=("cell", "realworld"), help="run only part 4 or part 5")
    parser.add_argument("--scan-child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--huge-cell-child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scan_child:
        return scan_child(args.scan_child)
    if args.huge_cell_child:
        return huge_cell_child(args.huge_cell_child)
    if args.quick:
        args.students, args.values, args.rounds = min(args.students, 20_000), min(args.values, 2_000), 1

    from benchmarks.pgdata import DEFAULT_URL

    print(
        f"dereg classification benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    if args.only:
        args.skip_presidio = args.skip_db = True
        args.skip_cell, args.skip_realworld = args.only != "cell", args.only != "realworld"
    if not args.skip_presidio:
        bench_throughput(args.values, args.language or ("zh", "en"), args.corpus)
    if not args.skip_db:
        bench_database(args.url or DEFAULT_URL, args.students, args.rounds)
    if not args.skip_cell:
        bench_large_cell(1 if args.quick else 4)
        if args.huge_cell_mb:
            bench_huge_cell(args.url or DEFAULT_URL, 20 if args.quick else args.huge_cell_mb)
    if not args.skip_realworld:
        bench_realworld()
    print(
        f"\npeak RSS of this process (part 1 and database builds included): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
