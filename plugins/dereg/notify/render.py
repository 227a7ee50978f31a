"""Render one notice: Jinja templates from `include/templates/`, zh-CN first and English second,
as a multipart/alternative e-mail (plain text and HTML, UTF-8) with Message-ID and Reply-To."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache

import jinja2

from dereg import config


@dataclass
class NoticeContext:
    company_name_zh: str
    company_name_en: str
    sender: str
    reply_to: str
    categories: list[tuple[str, str]]
    kept: list[str]
    erase_date: dt.date
    response_deadline: dt.date
    complaint: str
    extra: dict = field(default_factory=dict)
    #: address -> the recipient's signed answer-page URL (None: the notice asks for a reply only)
    answer_link: Callable[[str], str] | None = None


@lru_cache(maxsize=4)
def _environment(directory: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
    )


def render_notice(ctx: NoticeContext, recipient, *, message_id: str) -> EmailMessage:
    env = _environment(str(config.templates_dir()))
    link = ctx.answer_link(recipient.email) if ctx.answer_link else None
    values = {"ctx": ctx, "recipient": recipient, "answer_url": link}
    subject = env.get_template("notice_subject.txt.j2").render(**values).strip()
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = ctx.sender
    message["To"] = recipient.email
    message["Reply-To"] = ctx.reply_to
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id
    message["Content-Language"] = "zh-CN, en"
    message.set_content(env.get_template("notice.txt.j2").render(**values), charset="utf-8")
    message.add_alternative(
        env.get_template("notice.html.j2").render(subject=subject, **values), subtype="html", charset="utf-8"
    )
    return message
