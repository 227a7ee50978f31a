"""The notice's sentence on whose data is deleted, in both languages and both parts, for a subject
notified directly (no children), a guardian of one child and a guardian of several; the fast
renderer (`NoticeRenderer`) and the reference one (`render_notice`) say the same."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from dereg.notify.recipients import Recipient
from dereg.notify.render import NoticeContext, NoticeRenderer, render_notice

CASES = {
    "subject": (
        [],
        "我们将删除您的个人信息。",
        "we will delete the personal information we hold about you",
    ),
    "one child": (
        ["王小红"],
        "我们将删除您及您的孩子（王小红）的个人信息。",
        "we will delete the personal information we hold about you and your child (王小红)",
    ),
    "several children": (
        ["王小红", "王小明"],
        "我们将删除您及您的孩子（王小红、王小明）的个人信息。",
        "we will delete the personal information we hold about you and your children (王小红, 王小明)",
    ),
}


def _ctx() -> NoticeContext:
    day = dt.date(2027, 1, 31)
    return NoticeContext(
        company_name_zh="小星星教育",
        company_name_en="Little Star Academy",
        sender="隐私办公室 <privacy@demo.example>",
        reply_to="privacy@demo.example",
        categories=[("姓名", "name")],
        kept=[],
        erase_date=day,
        response_deadline=day,
        complaint="privacy@demo.example",
    )


def _flat(text: str) -> str:
    return re.sub(r"<[^>]+>", "", re.sub(r"\s+", " ", text))


@pytest.mark.parametrize("case", list(CASES))
def test_whose_data_is_deleted_reads_right_in_both_languages(case):
    children, zh, en = CASES[case]
    recipient = Recipient(email="parent@example.com", name="王芳", children=children, contact_id="7")
    ctx = _ctx()
    message = render_notice(ctx, recipient, message_id="<m@x>")
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    for part in (_flat(text), _flat(html)):
        assert zh in part and en in part
        assert "您及的" not in part and "child(ren)" not in part
        assert ("about you and" in part) == bool(children) and ("您及" in part) == bool(children)
    # the fast path renders the same words for this shape
    assert NoticeRenderer(ctx).parts(recipient)[1] == text
