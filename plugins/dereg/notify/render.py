"""Render notices: Jinja templates from `include/templates/`, zh-CN first and English second, as a
multipart/alternative e-mail (plain text and HTML, UTF-8) with Message-ID and Reply-To.

`render_notice` builds one `EmailMessage` through Jinja and the `email` package: the reference.
`NoticeRenderer` produces the same message as wire bytes about ten times faster, which is what
delivery uses: the templates are rendered once per *shape* (how many children, whether the
recipient has a name and an answer link) with placeholders for the per-recipient values (name,
children's names, address, answer link), and each notice only substitutes those values (escaped
for the HTML part) and base64-encodes the two parts. The headers that do not change (Subject, From,
Reply-To) are encoded once. The first notice of every shape is also rendered the reference way and
compared; a template whose output depends on a per-recipient value in any other way than printing
it (a filter that changes it, a comparison) is caught there and that shape falls back to full
rendering, so the fast path never changes what a customer reads.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, formatdate, parseaddr
from functools import lru_cache
from types import SimpleNamespace

import jinja2
from markupsafe import escape

from dereg import config

SUBJECT, TEXT, HTML = "notice_subject.txt.j2", "notice.txt.j2", "notice.html.j2"


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


def template_environment() -> jinja2.Environment:
    """The Jinja environment of the templates in `include/templates/` (notices and copy e-mails)."""
    return _environment(str(config.templates_dir()))


def _render_parts(env: jinja2.Environment, ctx: NoticeContext, recipient, link: str | None):
    values = {"ctx": ctx, "recipient": recipient, "answer_url": link}
    subject = env.get_template(SUBJECT).render(**values).strip()
    text = env.get_template(TEXT).render(**values)
    html = env.get_template(HTML).render(subject=subject, **values)
    return subject, text, html


def render_notice(ctx: NoticeContext, recipient, *, message_id: str) -> EmailMessage:
    env = _environment(str(config.templates_dir()))
    link = ctx.answer_link(recipient.email) if ctx.answer_link else None
    subject, text, html = _render_parts(env, ctx, recipient, link)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = ctx.sender
    message["To"] = recipient.email
    message["Reply-To"] = ctx.reply_to
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id
    message["Content-Language"] = "zh-CN, en"
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message


def _mark(i: int) -> str:
    # private-use characters: never in a template, untouched by Jinja's escaping
    return f"\ue000{i}\ue001"


_LINE = re.compile(".{1,76}")
_MARK = re.compile("\ue000(\\d+)\ue001")


def _segments(text: str, keys: list[str]) -> list[str]:
    """`text` split at its placeholders: literal text at even positions, value keys at odd ones."""
    parts = _MARK.split(text)
    for i in range(1, len(parts), 2):
        parts[i] = keys[int(parts[i])]
    return parts


def _fill(segments: list[str], values: dict[str, str]) -> str:
    filled = segments[:]
    for i in range(1, len(filled), 2):
        filled[i] = values[filled[i]]
    return "".join(filled)


def _address_header(value: str, name: str) -> str:
    display, address = parseaddr(value)
    if not display:
        return address
    if display.isascii():
        return formataddr((display, address))
    return f"{Header(display, 'utf-8', header_name=name).encode(linesep=chr(13) + chr(10))} <{address}>"


def _header(value: str, name: str) -> str:
    if value.isascii() and len(value) + len(name) < 76:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _b64(text: str) -> str:
    """Base64 of the UTF-8 text in lines of 76 characters, each ending in CRLF (RFC 2045)."""
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False).decode("ascii")
    return "\r\n".join(_LINE.findall(encoded)) + "\r\n"


_date_cache: list = [None, ""]


def _date_header() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, formatdate(now, usegmt=True)]
    return _date_cache[1]


@dataclass
class _Shape:
    #: each part split at its placeholders (see _segments)
    subject: list[str]
    text: list[str]
    html: list[str]
    subject_fixed: str | None  # the encoded Subject when it holds no per-recipient value
    html_keys: set[str] = field(default_factory=set)  # the values the HTML part prints
    checked: bool = False
    exact: bool = True


class NoticeRenderer:
    """Wire bytes of each notice of one `NoticeContext` (see the module docstring)."""

    def __init__(self, ctx: NoticeContext) -> None:
        self.ctx = ctx
        self.env = _environment(str(config.templates_dir()))
        for name in (SUBJECT, TEXT, HTML):
            self.env.get_template(name)  # compiled once, cached by the environment
        self.envelope_sender = parseaddr(ctx.sender)[1]
        self.from_header = _address_header(ctx.sender, "From")
        self.reply_to_header = _address_header(ctx.reply_to, "Reply-To")
        self.boundary = f"=_dereg_{secrets.token_hex(12)}"
        self.shapes: dict[tuple, _Shape] = {}

    def _shape(self, recipient, link: str | None) -> tuple[_Shape, dict[str, str]]:
        values = {"name": recipient.name, "email": recipient.email, "contact_id": recipient.contact_id}
        values.update({f"child{i}": c for i, c in enumerate(recipient.children)})
        if link is not None:
            values["link"] = link
        key = (len(recipient.children), bool(recipient.name), link is not None)
        shape = self.shapes.get(key)
        if shape is None:
            keys = list(values)
            marks = {k: _mark(i) for i, k in enumerate(keys)}
            fake = SimpleNamespace(
                name=marks["name"],
                email=marks["email"],
                contact_id=marks["contact_id"],
                children=[marks[f"child{i}"] for i in range(len(recipient.children))],
            )
            subject, text, html = _render_parts(self.env, self.ctx, fake, marks.get("link"))
            fixed = None if _MARK.search(subject) else _header(subject, "Subject")
            html_segments = _segments(html, keys)
            shape = self.shapes[key] = _Shape(
                _segments(subject, keys),
                _segments(text, keys),
                html_segments,
                fixed,
                set(html_segments[1::2]),
            )
        return shape, values

    def parts(self, recipient) -> tuple[str, str, str]:
        """(subject, plain text, HTML) of one recipient's notice."""
        return self._parts(recipient)[:3]

    def _parts(self, recipient) -> tuple[str, str, str, _Shape]:
        link = self.ctx.answer_link(recipient.email) if self.ctx.answer_link else None
        shape, values = self._shape(recipient, link)
        if not shape.exact:
            return (*_render_parts(self.env, self.ctx, recipient, link), shape)
        subject = _fill(shape.subject, values) if len(shape.subject) > 1 else shape.subject[0]
        text = _fill(shape.text, values)
        html = _fill(shape.html, {k: str(escape(values[k])) for k in shape.html_keys})
        if not shape.checked:
            shape.checked = True
            reference = _render_parts(self.env, self.ctx, recipient, link)
            if reference != (subject, text, html):
                shape.exact = False
                return (*reference, shape)
        return subject, text, html, shape

    def render(self, recipient, *, message_id: str) -> bytes:
        """The notice as the bytes handed to the SMTP server (CRLF line ends)."""
        if not recipient.email.isascii():
            from email import policy

            return render_notice(self.ctx, recipient, message_id=message_id).as_bytes(policy=policy.SMTPUTF8)
        subject, text, html, shape = self._parts(recipient)
        encoded_subject = (
            shape.subject_fixed if shape.exact and shape.subject_fixed else _header(subject, "Subject")
        )
        b = self.boundary
        return (
            f"Subject: {encoded_subject}\r\n"
            f"From: {self.from_header}\r\n"
            f"To: {recipient.email}\r\n"
            f"Reply-To: {self.reply_to_header}\r\n"
            f"Date: {_date_header()}\r\n"
            f"Message-ID: {message_id}\r\n"
            "Content-Language: zh-CN, en\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{b}"\r\n'
            "\r\n"
            f"--{b}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            "\r\n"
            f"{_b64(text)}"
            f"--{b}\r\n"
            'Content-Type: text/html; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            "\r\n"
            f"{_b64(html)}"
            f"--{b}--\r\n"
        ).encode("ascii")
