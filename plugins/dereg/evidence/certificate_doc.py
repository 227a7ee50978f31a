"""The certificate a person reads: one bilingual page (Chinese first) rendered from the signed JSON,
and the same as PDF.

The page carries the fields of NIST SP 800-88's sample certificate of sanitization (who performed
and who approved it, the media / stores, the method per store, the verification method and result,
the date, signatures) and Dereg's evidence (plan hash, ledger head and checkpoints, the backup kept
and its retention, inferred links, residual risks), then the certificate's SHA-256 and the command
that verifies it. An appendix after a page break shows the whole signed content.

PDF: WeasyPrint (pure Python over the system's Pango). Where WeasyPrint or Pango is missing the HTML
is still written, and `render_pdf` says why there is no PDF; printing the HTML from a browser gives
the same page.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import jinja2
from markupsafe import Markup

from dereg import config

log = logging.getLogger(__name__)

KIND_ZH = {"subject_shred": "单个个人信息主体的备份删除证明", "final": "最终证明：客户数据已无任何副本"}
ACTION_ZH = {"delete": "删除", "pseudonymize": "假名化", "keep": "保留", "crypto_shred": "密钥销毁"}


class PdfUnavailable(RuntimeError):
    """No PDF could be rendered here (WeasyPrint or the system's Pango is missing)."""


def _day(value: Any) -> str:
    text = str(value or "")
    return text[:10] if len(text) >= 10 else (text or "—")


def _rows(store: dict[str, Any], action: str) -> str:
    """Rows (or object versions) the store had deleted / pseudonymized, as the plan and run say."""
    if "objects_affected" in store:
        if action != "delete":
            return "—"
        return f"{(store.get('objects_affected') or {}).get('versions_deleted', 0)} versions"
    plan = store.get("plan") or {}
    if action == "delete":
        value = plan.get("rows_to_delete")
    else:
        value = plan.get("rows_to_pseudonymize")
    return "—" if value is None else f"{int(value):,}"


def _verified(store: dict[str, Any]) -> str:
    verification = store.get("verification") or {}
    if not verification:
        return "—"
    return "通过 passed" if verification.get("ok") else "未通过 FAILED"


def _nested(value: Any) -> str:
    """Any JSON value as escaped HTML (the appendix)."""
    if isinstance(value, dict):
        if not value:
            return "<em>—</em>"
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_nested(v)}</td></tr>" for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if not value:
            return "<em>—</em>"
        return "<ul>" + "".join(f"<li>{_nested(v)}</li>" for v in value) + "</ul>"
    if value is None:
        return "<em>—</em>"
    return html.escape(str(value))


def _inferred_links(body: dict[str, Any]) -> list[str]:
    """The inferred links the certificate lists (`stores[].inferred_links`), as one line each."""
    lines = []
    for store in body.get("stores") or []:
        for link in store.get("inferred_links") or []:
            lines.append(link.get("link", "") if isinstance(link, dict) else str(link))
    return [line for line in lines if line]


def _risks(body: dict[str, Any]) -> list[str]:
    """Residual risks per store (closure certificate), then the certificate's own (a subject shred's,
    the final certificate's)."""
    seen: dict[str, None] = {}
    for risk in body.get("residual_risks") or []:
        seen.setdefault(str(risk), None)
    for store in body.get("stores") or []:
        for risk in store.get("residual_risks") or []:
            seen.setdefault(f"{store.get('source_id')}: {risk}", None)
    return list(seen)


def _titles(body: dict[str, Any]) -> tuple[str, str]:
    """Chinese and English title: a closure certificate's, or the one a subject shred's or the final
    certificate's body carries as "English / 中文"."""
    title = str(body.get("title") or "")
    if body.get("kind") and " / " in title:
        english, chinese = title.rsplit(" / ", 1)
        return chinese, english
    if body.get("kind") in KIND_ZH:
        return KIND_ZH[body["kind"]], title or body["kind"]
    return "个人信息删除证明", "Certificate of personal-data sanitization"


def _backups(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The backups a subject shred or the final certificate acted on (their media, beside `stores`)."""
    found = body.get("backups_shredded_for_subject") or body.get("backups_destroyed") or []
    return [b for b in found if isinstance(b, dict)]


def render_document(cert: dict[str, Any], *, json_name: str, sha256: str) -> str:
    """The readable certificate as HTML; `sha256` is that of the signed JSON file `json_name`."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(config.templates_dir())),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["day"] = _day
    env.filters["count_of"] = _rows
    body = cert["body"]
    title_zh, title_en = _titles(body)
    return env.get_template("certificate.html.j2").render(
        body=body,
        title_zh=title_zh,
        title_en=title_en,
        backups=_backups(body),
        sig=cert.get("signature") or {},
        sha256=sha256,
        json_name=json_name,
        action_zh=ACTION_ZH,
        verified=_verified,
        links=_inferred_links(body),
        risks=_risks(body),
        details=Markup(_nested(body)),
    )


def render_pdf(document: str) -> bytes:
    """The document as PDF bytes; PdfUnavailable when WeasyPrint cannot run here."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: the system's Pango/HarfBuzz libraries are missing
        raise PdfUnavailable(
            f"no PDF: WeasyPrint cannot be used here ({type(exc).__name__}); the HTML copy is written, "
            "print it to PDF from a browser, or install WeasyPrint and Pango (Debian: libpango-1.0-0)"
        ) from None
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    return HTML(string=document).write_pdf()
