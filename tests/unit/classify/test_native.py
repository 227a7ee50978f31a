"""The native candidate search (Hyperscan, `dereg.classify.native`) finds exactly what Python's
`re` finds: the same hits, in the same places, on the labelled corpus and on texts built to
catch the translation out (look-behinds, boundaries, non-ASCII digits and spaces, values cut
across fields). Without the `hyperscan` package (or with DEREG_NATIVE_SCAN=0) only the fallback runs: the
comparisons are then trivially true, and the Hyperscan-only tests are skipped."""

from __future__ import annotations

import random
import re
import sys

import pytest

from dereg.classify import native, scanner
from dereg.classify.scanner import scan_stream
from devtools.demo.corpus import build_corpus

_HAVE_HYPERSCAN = scanner._regions_finder() is not None


def _block(values: list[str]) -> str:
    lines, fields = [], []
    for i, value in enumerate(values):
        fields.append(value.replace("\t", " ").replace("\n", " "))
        if len(fields) == 3 or i == len(values) - 1:
            lines.append("\t".join(fields))
            fields = []
    return "\n".join(lines) + "\n"


def _corpus_block() -> str:
    corpus = build_corpus(rows=400, seed=11)
    values = [str(v) for t in corpus.tables for c in t.columns for v in c.values if v not in (None, "")]
    return _block(values)


_TRICKY = [
    "身份证11010519491231002X，手机13812345678",
    "a13812345678 13812345678a _13812345678 +8613812345678 008613812345678",
    "x.y-z+q@mail.example.com.cn; -a@b.co; a@b.c; name@域名.cn",
    "version 1.2.3.4 版本：10.0.0.1 ip 192.168.1.1.5 ip 10.0.0.1 fe80::1 2001:db8::8a2e:370:7334",
    "护照号码：E12345678 passport No. G12345678 C20240315 H1234567890 E1234567",
    "微信号：zhangwei_88 WeChat ID: li-si-2020 QQ号 123456789 wxid_abcdefghijklmn12",
    "电话010-62345678转123 (021)62345678 0755 8888 6666 4008001234",
    "６２２２０２１２３４５６７８９０１２８ ١٣٨١٢٣٤٥٦٧٨ 13812345678",  # full-width, Arabic-Indic
    "联系\u300013812345678\u3000或\u00a0zhang@example.com",
    "6222 0212 3456 7890 128 6222-0212-3456-7890-128 62220212345678901280",
    "糖尿病 hypertension Hypertension asthma-like xasthma 高血压患者",
    "91350100M000100Y43 913501007980012345",
    "1381234\t5678 11010519491231\t002X zhang@\texample.com",
    "记-202503-0355 凭证 202503-0355 订单 2025030355 +86 755 8888 6666 0086-21-62345678 (0755)88886666",
    "单号 62345678-0755 12-62345678 9010-62345678 10-62345678转12 0-62345678",
]


def _hits(text: str, pieces: int = 1) -> list:
    if pieces == 1:
        return list(scan_stream([text]))
    step = max(1, len(text) // pieces)
    return list(scan_stream(text[i : i + step] for i in range(0, len(text), step)))


def _without_native(monkeypatch, text: str, pieces: int = 1) -> list:
    with monkeypatch.context() as m:
        m.setattr(scanner, "_regions_finder", lambda: None)
        return _hits(text, pieces)


def test_fallback_is_forced(monkeypatch):
    monkeypatch.setattr(scanner, "_regions_finder", lambda: None)
    assert scanner._regions_finder() is None
    assert list(scan_stream(["电话 13812345678\n"])) == [(0, 0, "cn_mobile", "13812345678")]


def test_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("DEREG_NATIVE_SCAN", "0")
    native.regions_finder.cache_clear()
    try:
        assert native.regions_finder((re.compile(r"\d{11}"),)) is None
    finally:
        native.regions_finder.cache_clear()


@pytest.mark.parametrize("pieces", [1, 7])
def test_the_labelled_corpus_gives_the_same_hits_both_ways(monkeypatch, pieces):
    text = _corpus_block()
    native_hits = _hits(text, pieces)
    assert len(native_hits) > 500
    assert native_hits == _without_native(monkeypatch, text, pieces)


def test_tricky_texts_give_the_same_hits_both_ways(monkeypatch):
    rng = random.Random(5)
    values = _TRICKY + ["".join(rng.sample(_TRICKY, 3)) for _ in range(50)]
    text = _block(values)
    native_hits = _hits(text)
    assert native_hits == _without_native(monkeypatch, text)
    assert {h[2] for h in native_hits} >= {"cn_mobile", "cn_resident_id", "email", "bank_card", "phone"}


def test_every_detector_pattern_translates():
    if not _HAVE_HYPERSCAN:
        pytest.skip("native search off (hyperscan missing or DEREG_NATIVE_SCAN=0)")
    for detector in scanner.embedded_detectors():
        expression = native.hs_expression(detector.PATTERN)
        assert "(?<" not in expression and "(?=" not in expression and "(?!" not in expression


def test_a_non_ascii_digit_sends_the_text_to_re():
    if not _HAVE_HYPERSCAN:
        pytest.skip("native search off (hyperscan missing or DEREG_NATIVE_SCAN=0)")
    regions = scanner._regions_finder()
    assert [r[:2] for r in regions("电话 13812345678", 0)] == [(2, 14)]
    assert regions("电话 １3812345678", 0) is None
    assert regions("电话 13812345678 \udc80", 0) is None  # a lone surrogate is no UTF-8


def test_without_the_package_the_scanner_uses_re(monkeypatch):
    monkeypatch.setitem(sys.modules, "hyperscan", None)  # import hyperscan raises ImportError
    native.regions_finder.cache_clear()
    try:
        assert native.regions_finder((re.compile(r"\d{11}"),)) is None
    finally:
        native.regions_finder.cache_clear()


def test_untranslatable_patterns_turn_the_shortcut_off():
    with pytest.raises(native.Untranslatable):
        native.hs_expression(re.compile(r"(a)\1"))
    with pytest.raises(native.Untranslatable):
        native.hs_expression(re.compile(r"\w+@", re.I))


def test_the_unicode_tables_match_this_python():
    assert native.UNICODE_SPACE_RANGES == tuple(native._unicode_ranges(r"\s"))
    assert native.OTHER_DIGIT_RANGES == tuple(r for r in native._unicode_ranges(r"\d") if r[0] >= 0x80)


def test_byte_offsets_become_character_offsets():
    import numpy as np

    text = "a张\U0001d7ce b\u00e9c@例.cn"
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    data = text.encode("utf-8")
    bounds = [len(text[:i].encode("utf-8")) for i in range(len(text) + 1)]
    assert native._char_offsets(points, bounds) == list(range(len(text) + 1))
    assert len(data) == bounds[-1]


def test_doctests():
    import doctest

    assert doctest.testmod(native).failed == 0


def test_joined_expressions_give_the_same_regions_and_name_every_detector_that_matches(monkeypatch):
    """Expressions joined into one (fewer reports) cover the same text as one per pattern, and a
    region's mask holds every detector whose own pattern matches inside it (the scanner tries
    only those there)."""
    if not _HAVE_HYPERSCAN:
        pytest.skip("native search off (hyperscan missing or DEREG_NATIVE_SCAN=0)")
    patterns = scanner.native_patterns()
    joined = scanner._regions_finder()  # compiled once per process, joined
    assert len(joined.masks) < len(patterns)  # some were joined
    monkeypatch.setattr(native, "GROUP_CHARS", 0)
    separate = native._finder(*native._compile(patterns))
    assert len(separate.masks) == len(patterns)
    rng = random.Random(7)
    tricky = [v for v in _TRICKY if native._OTHER_DIGIT.search(v) is None]  # no text sent to re
    text = _block(tricky + ["".join(rng.sample(tricky, 3)) for _ in range(30)])
    regions = joined(text, 0)
    assert regions and [r[:2] for r in regions] == [r[:2] for r in separate(text, 0)]
    for i, detector in enumerate(scanner.embedded_detectors()):
        at_token_start = re.compile(scanner._TOKEN_START + scanner._scoped(detector.PATTERN))
        for m in at_token_start.finditer(text):
            if getattr(detector, "CANDIDATE", None) is not None and not detector.is_valid(m.group()):
                continue  # a detector's CANDIDATE leaves out matches it rejects
            region = next(r for r in regions if r[0] <= m.start() and m.end() <= r[1])
            assert region[2] >> i & 1, (i, m.group())


def test_the_patterns_are_the_same_text_in_every_process():
    # a worker looks up the compiled search its parent handed over by the patterns' text, and the
    # cache of compiled searches keys on it: a set's order (hash seeds differ) must not show
    from tests.unit.classify.seeds import printed_under_seeds

    script = (
        "import hashlib; from dereg.classify import scanner; "
        "print(hashlib.sha256(repr([d.PATTERN.pattern for d in scanner.embedded_detectors()]).encode()).hexdigest())"
    )
    assert len(printed_under_seeds(script, ("1", "2"))) == 1


def test_the_compiled_search_is_cached_and_a_bad_cache_file_is_compiled_again(tmp_path, monkeypatch):
    if not _HAVE_HYPERSCAN:
        pytest.skip("native search off (hyperscan missing or DEREG_NATIVE_SCAN=0)")
    monkeypatch.setenv("DEREG_STATE_DIR", str(tmp_path))
    patterns = (re.compile(r"(?<![0-9A-Za-z_])1[3-9]\d{9}(?![0-9A-Za-z_])"), re.compile(r"[a-z]+@[a-z]+\.cn"))
    text = "电话 13812345678, zhang@example.cn"
    native.regions_finder.cache_clear()
    try:
        compiled = native.regions_finder(patterns)(text, 0)
        cached = native._cache_file([native.hs_expression(p) for p in patterns])
        assert cached.parent == tmp_path / native.CACHE_FOLDER and cached.exists()
        native.regions_finder.cache_clear()
        assert native.regions_finder(patterns)(text, 0) == compiled  # loaded from the file
        cached.write_bytes(b"[1, 2]\nnot a database")
        native.regions_finder.cache_clear()
        assert native.regions_finder(patterns)(text, 0) == compiled  # compiled again ...
        assert native._cached(cached) is not None  # ... and the file written anew
    finally:
        native.regions_finder.cache_clear()


@pytest.mark.skipif(not _HAVE_HYPERSCAN, reason="needs the hyperscan package")
def test_span_masks_leave_every_value_with_the_spans_it_has_alone():
    """A sample's values searched together (`scanner.span_masks`): each value's mask lets `spans`
    find exactly what it finds trying every detector, on the labelled corpus and the tricky
    texts (values of one column at a time, and all of them at once), and the masks do skip
    detectors (most values hold no candidate at all)."""
    corpus = build_corpus(rows=400, seed=11)
    columns = [
        [str(v).strip() for v in c.values if v not in (None, "")] for t in corpus.tables for c in t.columns
    ]
    tricky = _TRICKY + [t.replace("\t", " ") for t in _TRICKY] + ["", "a", "13812345678"]
    everything = [v for values in columns for v in values] + tricky
    skipped = 0
    for texts in [*columns, tricky, everything]:
        masks = scanner.span_masks(texts)
        if not texts:
            continue
        if masks is None:  # digits beyond ASCII: the native search cannot say, `spans` as before
            assert any(native._OTHER_DIGIT.search(t) for t in texts)
            plain = [t for t in texts if not native._OTHER_DIGIT.search(t)]
            texts, masks = plain, scanner.span_masks(plain)
        assert masks is not None and len(masks) == len(texts)
        for text, mask in zip(texts, masks, strict=True):
            assert scanner.spans(text, mask=mask) == scanner.spans(text), text
            skipped += mask != -1 and mask.bit_count() < len(scanner.embedded_detectors())
    assert skipped > len(everything)  # the masks narrowed the search for most values


def test_digits_beyond_ascii_are_found_in_the_utf8_bytes_as_by_python():
    """The search over UTF-8 bytes finds a digit of OTHER_DIGIT_RANGES wherever `_OTHER_DIGIT`
    does, and nowhere else: every code point beyond ASCII, alone and among others."""
    search = native._other_digit_search()
    assert search is not None
    others = [chr(p) for p in range(0x80, 0x110000) if not 0xD800 <= p < 0xE000]
    digits = [c for c in others if native._OTHER_DIGIT.match(c)]
    assert len(digits) == sum(last - first + 1 for first, last in native.OTHER_DIGIT_RANGES)
    plain = "".join(c for c in others if not native._OTHER_DIGIT.match(c))
    assert not search(plain.encode("utf-8"))
    for digit in digits:
        assert search(("张三，电话" + digit + "号").encode("utf-8")), hex(ord(digit))
    for text in _TRICKY:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: such a text never reaches the search
            continue
        assert search(data) == (native._OTHER_DIGIT.search(text) is not None)


@pytest.mark.skipif(not _HAVE_HYPERSCAN, reason="needs the hyperscan package")
def test_scan_values_counts_the_same_with_and_without_the_batch_search(monkeypatch):
    """`scan_values` skips the values its batch's native search finds no candidate in, and searches
    the others with the pattern of the detectors the search names for them: the counts are those
    of searching every value with the whole pattern, on the labelled corpus, the tricky texts and
    batches cut anywhere (and it did skip values)."""
    corpus = build_corpus(rows=600, seed=23)
    values = (
        [v for t in corpus.tables for c in t.columns for v in c.values] + _TRICKY + [None, "", 13812345678]
    )
    skipped = []
    masks_of = scanner.span_masks

    def counting(texts):
        masks = masks_of(texts)
        skipped.append(sum(1 for m in masks or () if not m))
        return masks

    monkeypatch.setattr(scanner, "span_masks", counting)
    for batch in (4096, 7, 1):
        monkeypatch.setattr(scanner, "SCAN_VALUES_BATCH", batch)
        together = scanner.scan_values(values)
        with monkeypatch.context() as m:
            m.setattr(scanner, "span_masks", lambda texts: None)
            alone = scanner.scan_values(values)
        assert together == alone and together["_values"] > 1000
    assert sum(skipped) > len(values)


@pytest.mark.skipif(not _HAVE_HYPERSCAN, reason="needs the hyperscan package")
def test_the_detectors_search_in_byte_mode():
    # every detector's expression is spelled in bytes (Chinese text is searched about twice as fast)
    assert scanner._regions_finder().lead_bytes
    for detector in scanner.embedded_detectors():
        pattern = getattr(detector, "CANDIDATE", None) or detector.PATTERN
        assert native._byte_expression(native.hs_expression(pattern)).isascii()


_BYTE_CASES = [
    # a repeat after a character beyond ASCII repeats the whole character; classes of both kinds
    (
        r"(?<![0-9A-Za-z_])微信号?[:：\s]*[A-Za-z][-_A-Za-z0-9]{3,8}(?![0-9A-Za-z_])",
        ["微信：ab12", "微信号 abc_9", "联系微信号：：xyz12 谢谢", "a微信号:abcd"],
    ),
    (
        r"(?<![0-9A-Za-z_])[甲乙丙丁Ⅰ-Ⅻ]{1,3}(?:号|號)[0-9]{2,4}",
        ["房间甲乙号12和丙號345", "丁丁丁丁号1234", "第Ⅳ号56"],
    ),
    (
        r"(?<![0-9A-Za-z_])[^0-9A-Za-z_ ]{2}先生(?![A-Za-z])",
        ["联系王五先生，或李四先生x", "é先生 ab先生 张三先生"],
    ),
    (r"(?<![0-9A-Za-z_])\d{3}(?![0-9])", ["编号：123，ＡＢ456 789"]),
]


@pytest.mark.skipif(not _HAVE_HYPERSCAN, reason="needs the hyperscan package")
@pytest.mark.parametrize("pattern, texts", _BYTE_CASES)
def test_byte_mode_ranges_hold_every_match(pattern, texts):
    """In byte mode a range starts at the character holding the lead's byte: every match at a
    token start lies inside a range, after its first character unless at the text's start, as in
    UTF-8 mode."""
    compiled = re.compile(pattern)
    database, masks, lead_bytes = native._compiled([native.hs_expression(compiled)])
    assert lead_bytes
    finder = native._finder(database, masks, lead_bytes)
    at_token_start = re.compile(scanner._TOKEN_START + pattern)
    matched = 0
    for text in texts:
        regions = finder(text, 0)
        found = list(at_token_start.finditer(text))
        matched += len(found)
        for m in found:
            assert any(r[0] <= m.start() and m.end() <= r[1] for r in regions), (text, m.group())
            assert all(r[0] < m.start() or m.start() == 0 for r in regions if r[0] <= m.start() < r[1])
        assert all(a[1] < b[0] for a, b in zip(regions, regions[1:], strict=False))  # apart, in order
    assert matched >= len(texts) - 1


@pytest.mark.skipif(not _HAVE_HYPERSCAN, reason="needs the hyperscan package")
def test_a_pattern_byte_mode_cannot_spell_keeps_the_utf8_mode():
    pattern = re.compile(r"(?<![0-9A-Za-z_])[^，。]{2}先生")  # a negated class beyond ASCII
    with pytest.raises(native.Untranslatable):
        native._byte_expression(native.hs_expression(pattern))
    database, masks, lead_bytes = native._compiled([native.hs_expression(pattern)])
    assert not lead_bytes
    (region,) = native._finder(database, masks, lead_bytes)("，王五先生。", 0)
    assert region[0] <= 1 and region[1] >= 5
