"""The copy e-mail from its templates (`include/templates/copy*.txt.j2`) says exactly what the
hand-written message it replaces said, for a link and for an attachment."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage

import pytest

from dereg.notify.fulfil import copy_message
from dereg.notify.recipients import Recipient

COMPANY = {
    "name_zh": "小星星教育",
    "name_en": "Little Star Academy",
    "sender": "隐私办公室 <privacy@demo-academy.example>",
    "reply_to": "privacy@demo-academy.example",
}
EXPIRES = dt.datetime(2026, 12, 7, 10, 30, tzinfo=dt.UTC)
URL = "http://dereg.test/dereg/copy/abc.def"


def _reference(recipient, *, url: str, expires: dt.datetime, attachment: bytes | None) -> EmailMessage:
    """The message as `operators.stages._copy_message` built it before the templates (frozen copy)."""
    m = COMPANY
    message = EmailMessage()
    if attachment is not None:
        message.set_content(
            f"{recipient.name}，您好：\n\n按您的要求，附件是您的个人信息副本（JSON 与 CSV，ZIP 压缩包）。\n\n"
            f"{m['name_zh']}\n\nDear {recipient.name},\n\nAs you asked, the attached ZIP file holds a copy of "
            f"your personal data (JSON and CSV).\n\n{m['name_en']}\n",
            charset="utf-8",
        )
        message.add_attachment(
            attachment, maintype="application", subtype="zip", filename="personal-data.zip"
        )
    else:
        message.set_content(
            f"{recipient.name}，您好：\n\n按您的要求，您的个人信息副本（JSON 与 CSV，ZIP 压缩包）可在 "
            f"{expires:%Y-%m-%d} 前从以下链接下载（仅限本人使用）：\n{url}\n\n{m['name_zh']}\n\n"
            f"Dear {recipient.name},\n\nAs you asked, a copy of your personal data (JSON and CSV in a ZIP file) "
            f"can be downloaded until {expires:%Y-%m-%d} from this link, which is yours alone:\n{url}\n\n"
            f"{m['name_en']}\n",
            charset="utf-8",
        )
    message["Subject"] = f"{m['name_zh']}：您的个人信息副本 / {m['name_en']}: a copy of your personal data"
    message["From"] = m["sender"]
    message["To"] = recipient.email
    message["Reply-To"] = m["reply_to"]
    return message


def _message(recipient, attachment):
    return copy_message(
        company_name_zh=COMPANY["name_zh"],
        company_name_en=COMPANY["name_en"],
        sender=COMPANY["sender"],
        reply_to=COMPANY["reply_to"],
        recipient=recipient,
        url=URL,
        expires=EXPIRES,
        attachment=attachment,
    )


def _comparable(message: EmailMessage) -> list:
    """Headers (but the per-message Date and Message-ID) and every part's type, headers and content."""
    parts = []
    for part in message.walk():
        headers = [(k, str(v)) for k, v in part.items() if k not in ("Date", "Message-ID")]
        payload = None if part.is_multipart() else part.get_content()
        parts.append((part.get_content_type(), headers, payload))
    return parts


@pytest.mark.parametrize("attachment", [None, b"PK\x03\x04 zip bytes"], ids=["link", "attachment"])
@pytest.mark.parametrize("name", ["王小明", ""], ids=["named", "nameless"])
def test_the_copy_e_mail_is_what_it_was_before_the_templates(attachment, name):
    recipient = Recipient(email="parent@example.com", name=name, children=["王小红"], contact_id="7")
    new, old = (
        _message(recipient, attachment),
        _reference(recipient, url=URL, expires=EXPIRES, attachment=attachment),
    )
    assert _comparable(new) == _comparable(old)
    assert new["Date"] and new["Message-ID"].endswith("@demo-academy.example>")


def test_zh_cn_comes_first_and_the_link_only_when_nothing_is_attached():
    recipient = Recipient(email="parent@example.com", name="王小明", children=[], contact_id="7")
    linked = _message(recipient, None).get_body(preferencelist=("plain",)).get_content()
    assert linked.index("您好") < linked.index("Dear") and linked.count(URL) == 2 and "2026-12-07" in linked
    attached = _message(recipient, b"zip").get_body(preferencelist=("plain",)).get_content()
    assert URL not in attached and "附件" in attached
