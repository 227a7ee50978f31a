"""The Compliance view: where each company's closure stands, for anyone who may use the Airflow UI.

Mounted by the Dereg Airflow plugin under `/dereg/compliance` on the Airflow API server, and shown
in the UI's navigation as "Compliance" (an external view rendered in the UI's frame). For each
company: the closure stage (the latest ledger entry of its latest closure run), the notices sent and
answered, the backups with their retention and last drill result, and the certificates, each
verified on every page view (Ed25519 signature against the keyring's public key, cited ledger
entries, the whole ledger hash chain) with a download link.

The page needs an authenticated Airflow user: the same JWT the UI uses (the `_token` cookie, or an
`Authorization: Bearer` header from `POST /auth/token`), checked by Airflow's own auth manager,
which must allow the user to view the UI (every role does, `viewer` included). It shows counts and
references only, never a customer's personal data.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

DRILL_STAGE = "recovery_drill"
_bearer = HTTPBearer(auto_error=False)


# --- what the page shows ----------------------------------------------------------------------------


@dataclass
class BackupStatus:
    backup_id: str
    source_id: str
    status: str
    retain_until: str | None
    object_lock: bool
    last_drill: str  # "passed" | "failed" | "never"
    last_drill_at: str | None
    restore_checked: bool  # restored and verified during the closure (restore_verify succeeded)


@dataclass
class CertificateStatus:
    artifact_id: int
    run_id: str
    dry_run: bool
    issued_at: str
    valid: bool
    problems: list[str]
    checks: list[str]
    #: "final" for the retention sweep's final certificate, "subject" for one customer's shred inside
    #: locked backups (`dereg shred-subject`), else "closure"
    kind: str = "closure"


@dataclass
class CompanyStatus:
    company_id: str
    name_zh: str = ""
    name_en: str = ""
    run_id: str | None = None
    stage: str | None = None
    event: str | None = None
    stage_at: str | None = None
    notices_sent: int = 0
    notices_failed: int = 0
    notices_answered: int = 0
    backups: list[BackupStatus] = field(default_factory=list)
    certificates: list[CertificateStatus] = field(default_factory=list)
    #: when its backups' keys were last re-wrapped under a new key-encryption key (key rotation)
    key_rewrapped_at: str | None = None
    #: customers crypto-shredded one by one inside the locked backups (`dereg shred-subject`)
    subject_shreds: int = 0
    subject_shred_at: str | None = None
    #: complete backups whose data key is still wrapped under a keyring key older than the active one
    #: (an interrupted rotation: `dereg keyring rotate --rewrap-only` finishes it)
    rewrap_pending: int = 0


@dataclass
class ComplianceReport:
    companies: list[CompanyStatus]
    ledger_ok: bool
    ledger_reason: str
    key_note: str
    generated_at: str
    #: when the keyring's key-encryption key was last rotated (ledger stage key_rotation), if ever
    key_rotated_at: str | None = None


def _manifest_names() -> dict[str, tuple[str, str]]:
    from dereg.manifest import load_manifest, manifest_paths

    names = {}
    for path in manifest_paths():
        try:
            m = load_manifest(path)
        except Exception:  # noqa: BLE001 - a broken manifest must not hide the others' status
            continue
        names[m.company_id] = (m.name_zh, m.name_en)
    return names


def _pinned_key():
    """The keyring's public key, and a note saying which key certificates are checked against."""
    from dereg.keys import Keyring, public_key_fingerprint

    try:
        public = Keyring.load().public_key()
    except Exception as exc:  # noqa: BLE001 - without the keyring, verify against the embedded key
        return None, (
            f"keyring not readable ({type(exc).__name__}): signatures checked against the key embedded in "
            "each certificate, not against this deployment's key"
        )
    return (
        public,
        f"signatures checked against this deployment's signing key {public_key_fingerprint(public)}",
    )


def collect(store) -> ComplianceReport:
    """Everything the page shows, read from the compliance store `store` (an engine)."""
    import sqlalchemy as sa

    from dereg.backup import catalog
    from dereg.evidence.artifacts import artifacts
    from dereg.evidence.certificate import verify_certificate
    from dereg.evidence.ledger import Ledger
    from dereg.evidence.run_artifacts import CERTIFICATE
    from dereg.notify import answers, records
    from dereg.sweep import FINAL

    ledger = Ledger(store)
    names = _manifest_names()
    entries = ledger.entries()
    from dereg.rotation import DEPLOYMENT
    from dereg.rotation import STAGE as ROTATION_STAGE
    from dereg.subjectshred import STAGE as SHRED_STAGE
    from dereg.sweep import STAGE as SWEEP_STAGE

    lifecycle = {DRILL_STAGE, SWEEP_STAGE, FINAL, ROTATION_STAGE, SHRED_STAGE}
    company_ids = (set(names) | {e.company_id for e in entries}) - {DEPLOYMENT}
    with store.connect() as conn:
        cert_rows = conn.execute(
            sa.select(artifacts.c.id, artifacts.c.company_id, artifacts.c.run_id, artifacts.c.body)
            .where(artifacts.c.name.in_((CERTIFICATE, FINAL, SHRED_STAGE)))
            .order_by(artifacts.c.created_at, artifacts.c.id)
        ).all()
    company_ids |= {r.company_id for r in cert_rows}
    all_backups = catalog.list_backups(store, status=None)
    public_key, key_note = _pinned_key()
    chain = ledger.verify()

    report = []
    for company_id in sorted(company_ids):
        zh, en = names.get(company_id, ("", ""))
        status = CompanyStatus(company_id, zh, en)
        own = [e for e in entries if e.company_id == company_id]
        closure = [e for e in own if e.stage not in lifecycle]
        rewrapped = [e for e in own if e.stage == ROTATION_STAGE and e.event == "rewrapped"]
        status.key_rewrapped_at = rewrapped[-1].ts if rewrapped else None
        shreds = [e for e in own if e.stage == SHRED_STAGE and e.event == "succeeded"]
        status.subject_shreds = len({e.details.get("subject_ref") for e in shreds})
        status.subject_shred_at = shreds[-1].ts if shreds else None
        if closure:
            last = closure[-1]
            status.run_id, status.stage, status.event, status.stage_at = (
                last.run_id,
                last.stage,
                last.event,
                last.ts,
            )
            counts = records.counts(store, company_id, last.run_id)
            status.notices_sent = counts.get("sent", 0)
            status.notices_failed = counts.get("failed", 0) + counts.get("refused", 0)
            status.notices_answered = len(answers.current_answers(store, company_id, last.run_id))
        drills: dict[str, tuple[str, str]] = {}
        restored: set[str] = set()
        for e in own:
            if e.stage == DRILL_STAGE and e.details.get("backup_id"):
                drills[e.details["backup_id"]] = ("passed" if e.event == "succeeded" else "failed", e.ts)
            elif e.stage == "restore_verify" and e.event == "succeeded":
                restored.update(str(r.get("backup_id")) for r in (e.details.get("restores") or {}).values())
        for b in all_backups:
            if b["company_id"] != company_id:
                continue
            drill, drill_at = drills.get(b["backup_id"], ("never", None))
            status.backups.append(
                BackupStatus(
                    backup_id=b["backup_id"],
                    source_id=b["source_id"],
                    status=b["status"],
                    retain_until=b.get("retain_until"),
                    object_lock=bool(b.get("object_lock")),
                    last_drill=drill,
                    last_drill_at=drill_at,
                    restore_checked=b["backup_id"] in restored,
                )
            )
        for row in cert_rows:
            if row.company_id != company_id:
                continue
            try:
                cert = json.loads(row.body)
            except ValueError:
                cert = None
            result = verify_certificate(cert, public_key=public_key, store=store, chain=chain)
            body = cert.get("body", {}) if isinstance(cert, dict) else {}
            status.certificates.append(
                CertificateStatus(
                    artifact_id=row.id,
                    run_id=row.run_id,
                    dry_run=bool(body.get("dry_run")),
                    issued_at=str(body.get("finished_at") or body.get("issued_at") or ""),
                    kind={"final": "final", "subject_shred": "subject"}.get(body.get("kind"), "closure"),
                    valid=result.ok,
                    problems=list(result.problems),
                    checks=list(result.checks),
                )
            )
        report.append(status)
    rotated = [
        e
        for e in entries
        if e.company_id == DEPLOYMENT and e.stage == ROTATION_STAGE and e.event == "rotated"
    ]
    latest = str(rotated[-1].details.get("new_kek") or "") if rotated else ""
    if latest.startswith("kek-"):  # a keyring KEK (a KMS key keeps its id across rotations)
        keys = catalog.backup_keys
        with store.connect() as conn:
            stale = {
                r.backup_id
                for r in conn.execute(
                    sa.select(keys.c.backup_id).where(
                        keys.c.destroyed_at.is_(None),
                        keys.c.wrapped_key != "",
                        keys.c.kek_id != latest,
                        keys.c.kek_id.like("kek-%"),
                    )
                )
            }
        for status in report:
            status.rewrap_pending = sum(
                1 for b in status.backups if b.status == "complete" and b.backup_id in stale
            )
    return ComplianceReport(
        key_rotated_at=rotated[-1].ts if rotated else None,
        companies=report,
        ledger_ok=chain.ok,
        ledger_reason=chain.reason,
        key_note=key_note,
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


# --- HTML -------------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#1f2933;font-size:14px}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .3em;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;margin:.3em 0 .8em}td,th{border:1px solid #d9e2ec;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f0f4f8}.ok{color:#0b6b2e;font-weight:600}.bad{color:#b42318;font-weight:600}
.muted{color:#627d98}.banner{padding:.5em .8em;border-radius:4px;margin:.5em 0}
.banner.ok{background:#e3f9e5}.banner.bad{background:#fde8e8}code{font-size:.92em}
td code,td.when{white-space:nowrap}"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _day(ts: str | None) -> str:
    return _e(ts[:19].replace("T", " ")) if ts else "—"


def _days_left(ts: str | None) -> str:
    """Whole days until `ts` (ISO, UTC), or "ended" once it has passed."""
    if not ts:
        return "—"
    try:
        until = dt.datetime.fromisoformat(ts)
    except ValueError:
        return "—"
    if until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    days = (until - dt.datetime.now(dt.UTC)).days
    return f"{days:,} 天 days" if days >= 0 else "已到期 ended"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def render(report: ComplianceReport, user_name: str, base: str) -> str:
    parts = [
        "<h1>合规 Compliance</h1>",
        f"<p class='muted'>Signed in as <code>{_e(user_name)}</code>. Generated {_day(report.generated_at)} UTC "
        "from the compliance store. Counts and references only.</p>",
        f"<div class='banner {'ok' if report.ledger_ok else 'bad'}' id='ledger'>账本哈希链 Ledger hash chain: "
        f"{'intact' if report.ledger_ok else 'BROKEN'} — {_e(report.ledger_reason)}</div>",
        f"<p class='muted'>{_e(report.key_note)}</p>",
        f"<p class='muted' id='rotation'>密钥轮换 Key rotation: last {_day(report.key_rotated_at)} UTC "
        "(include/policy/keys.yaml)</p>"
        if report.key_rotated_at
        else "<p class='muted' id='rotation'>密钥轮换 Key rotation: never yet (include/policy/keys.yaml)</p>",
    ]
    if not report.companies:
        parts.append("<p>尚无公司。No company has a manifest or a ledger entry yet.</p>")
    for c in report.companies:
        title = _e(c.company_id) + (f" — {_e(c.name_en)} / {_e(c.name_zh)}" if c.name_en else "")
        parts.append(f"<section class='company' id='company-{_e(c.company_id)}'><h2>{title}</h2>")
        if c.run_id:
            parts.append(
                "<table class='closure'><tr><th>最近的注销运行 Latest closure run</th><td><code>"
                f"{_e(c.run_id)}</code></td></tr><tr><th>阶段 Stage</th><td class='stage'>{_e(c.stage)}: "
                f"<b>{_e(c.event)}</b> <span class='muted'>({_day(c.stage_at)})</span></td></tr>"
                f"<tr><th>已发通知 Notices sent</th><td class='notices-sent'>{c.notices_sent}</td></tr>"
                f"<tr><th>发送失败或被拒 Notices failed or refused</th><td class='notices-failed'>{c.notices_failed}</td></tr>"
                f"<tr><th>已回复的客户 Customers who answered</th><td class='notices-answered'>{c.notices_answered}</td></tr>"
                "</table>"
            )
        else:
            parts.append("<p class='muted'>尚未运行注销。No closure has run.</p>")
        if c.backups:
            rows = "".join(
                f"<tr class='backup'><td><code>{_e(b.backup_id)}</code></td><td>{_e(b.source_id)}</td>"
                f"<td>{_e(b.status)}</td><td class='retain when'>{_day(b.retain_until)}</td>"
                f"<td class='left'>{_days_left(b.retain_until)}</td>"
                f"<td>{'yes' if b.object_lock else 'no'}</td>"
                f"<td>{'yes' if b.restore_checked else 'no'}</td>"
                f"<td class='drill {'ok' if b.last_drill == 'passed' else 'bad' if b.last_drill == 'failed' else 'muted'}'>"
                f"{_e(b.last_drill)}{f' ({_day(b.last_drill_at)})' if b.last_drill_at else ''}</td></tr>"
                for b in c.backups
            )
            parts.append(
                "<table class='backups'><tr><th>备份 Backup</th><th>来源 Source</th><th>状态 Status</th>"
                "<th>保留至 Retain until (UTC)</th><th>剩余 Retention left</th><th>对象锁 Object Lock</th>"
                "<th>注销时已恢复 Restored at closure</th><th>最近演练 Last drill</th></tr>"
                + rows
                + "</table>"
            )
        else:
            parts.append("<p class='muted'>无备份。No backup.</p>")
        if c.key_rewrapped_at:
            parts.append(
                f"<p class='muted rewrapped'>备份密钥已重新封装 Backup keys re-wrapped under a new key: "
                f"{_day(c.key_rewrapped_at)} UTC</p>"
            )
        if c.rewrap_pending:
            parts.append(
                f"<p class='bad rewrap-pending'>密钥轮换未完成 Key rotation unfinished: {c.rewrap_pending} backup "
                "key(s) still wrapped under a retired key-encryption key; run <code>dereg keyring rotate "
                "--rewrap-only</code> (or the key_rotation DAG with rotate off)</p>"
            )
        if c.subject_shreds:
            parts.append(
                f"<p class='muted subject-shreds'>单个客户删除 Customers shredded one by one inside the locked "
                f"backups: {c.subject_shreds} (last {_day(c.subject_shred_at)} UTC)</p>"
            )
        if c.certificates:
            rows = []
            for cert in c.certificates:
                verdict = "VALID" if cert.valid else "INVALID"
                detail = "; ".join(cert.problems if not cert.valid else cert.checks)
                kind = (
                    "最终证明 final certificate"
                    if cert.kind == "final"
                    else "单个客户删除证明 one customer's shred"
                    if cert.kind == "subject"
                    else "dry-run report"
                    if cert.dry_run
                    else "certificate"
                )
                # every certificate has its readable one-page document (a closure's, a final one, a
                # subject shred's: each with its own title and media)
                readable = (
                    f"<a href='{_e(base)}/certificates/{cert.artifact_id}.pdf'>证明 PDF / readable PDF</a> · "
                )
                rows.append(
                    f"<tr class='certificate'><td><code>{_e(cert.run_id)}</code></td><td>{kind}</td>"
                    f"<td class='when'>{_day(cert.issued_at)}</td>"
                    f"<td class='verdict {'ok' if cert.valid else 'bad'}'>{verdict}</td>"
                    f"<td class='muted'>{_e(detail)}</td>"
                    f"<td>{readable}"
                    f"<a href='{_e(base)}/certificates/{cert.artifact_id}.json' download>download JSON</a></td></tr>"
                )
            parts.append(
                "<table class='certificates'><tr><th>运行 Run</th><th>类型 Kind</th><th>签发 Issued (UTC)</th>"
                "<th>验证 Verification</th><th>明细 Details</th><th></th></tr>" + "".join(rows) + "</table>"
            )
        else:
            parts.append("<p class='muted'>尚无证明。No certificate yet.</p>")
        parts.append("</section>")
    return "\n".join(parts)


# --- the app ----------------------------------------------------------------------------------------


#: the largest id the artifacts' integer primary key holds in every store (PostgreSQL's INTEGER is
#: 32-bit; a larger number would be a database error, not "not found")
_MAX_ID = 2**31 - 1


class _NotSignedIn(Exception):
    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason


async def airflow_user(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)):
    """The Airflow user of this request (bearer token or the UI's `_token` cookie), checked by the
    auth manager, who must be allowed to view the UI."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import HTTPException

    try:
        user = await get_user(request, None, bearer)
    except HTTPException as exc:
        raise _NotSignedIn(exc.status_code, str(exc.detail)) from None
    if not get_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise _NotSignedIn(403, f"user {user.get_name()!r} may not view the Airflow UI")
    return user


def create_app() -> FastAPI:
    app = FastAPI(title="Dereg compliance view", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_NotSignedIn)
    async def _not_signed_in(request: Request, exc: _NotSignedIn):
        from airflow.api_fastapi.app import get_auth_manager

        try:
            login = get_auth_manager().get_url_login()
        except Exception:  # noqa: BLE001 - the message still says what to do
            login = "/auth/login"
        here = quote(str(request.url.path))
        sep = "&" if "?" in login else "?"
        return _page(
            "Sign in needed",
            f"<h1>Compliance</h1><p>This page needs an Airflow user ({_e(exc.reason)}). "
            f"<a href='{_e(login)}{sep}next={here}' target='_top'>Sign in to Airflow</a>, then open it again.</p>",
            401 if exc.status == 401 else 403,
        )

    def _store():
        from dereg.evidence.store import open_store

        return open_store()

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request, user=Depends(airflow_user)):
        report = collect(_store())
        base = str(request.scope.get("root_path", "")).rstrip("/")
        return _page("Compliance — Dereg", render(report, user.get_name(), base))

    def _certificate_row(artifact_id: int):
        import sqlalchemy as sa

        from dereg.evidence.artifacts import artifacts
        from dereg.evidence.run_artifacts import CERTIFICATE
        from dereg.subjectshred import STAGE as SHRED_STAGE
        from dereg.sweep import FINAL

        # an id no row can have (beyond a 64-bit integer) is not found, not a database error
        if not 0 < artifact_id <= _MAX_ID:
            return None
        with _store().connect() as conn:
            return conn.execute(
                sa.select(artifacts.c.company_id, artifacts.c.run_id, artifacts.c.body).where(
                    artifacts.c.id == artifact_id,
                    artifacts.c.name.in_((CERTIFICATE, FINAL, SHRED_STAGE)),
                )
            ).first()

    def _not_found(artifact_id: int):
        return _page(
            "Not found", f"<p>No certificate with id {artifact_id}; reload the Compliance page.</p>", 404
        )

    def _file_stem(row) -> str:
        safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in row.run_id)
        return f"{row.company_id}-{safe_run}-certificate"

    def _signed_text(row) -> str:
        # byte for byte the certificate.json the certify stage wrote, so its SHA-256 is the same
        return json.dumps(json.loads(row.body), indent=2, ensure_ascii=False, sort_keys=True) + "\n"

    @app.get("/certificates/{artifact_id}.json")
    def certificate(artifact_id: int, user=Depends(airflow_user)):
        row = _certificate_row(artifact_id)
        if row is None:
            return _not_found(artifact_id)
        return Response(
            _signed_text(row).encode("utf-8"),
            media_type="application/json",
            headers={
                "Content-Disposition": f'attachment; filename="{_file_stem(row)}.json"',
                "Cache-Control": "no-store",
            },
        )

    @app.get("/certificates/{artifact_id}.pdf")
    def certificate_pdf(artifact_id: int, user=Depends(airflow_user)):
        """The readable one-page certificate (证明), rendered from the signed JSON; the HTML copy
        where no PDF can be rendered on this server."""
        import hashlib

        from dereg.evidence.certificate_doc import PdfUnavailable, render_document, render_pdf

        row = _certificate_row(artifact_id)
        if row is None:
            return _not_found(artifact_id)
        text = _signed_text(row)
        document = render_document(
            json.loads(text),
            json_name=f"{_file_stem(row)}.json",
            sha256=hashlib.sha256(text.encode()).hexdigest(),
        )
        try:
            body, media, suffix = render_pdf(document), "application/pdf", "pdf"
        except PdfUnavailable:
            body, media, suffix = document.encode("utf-8"), "text/html; charset=utf-8", "html"
        return Response(
            body,
            media_type=media,
            headers={
                "Content-Disposition": f'inline; filename="{_file_stem(row)}.{suffix}"',
                "Cache-Control": "no-store",
            },
        )

    return app


app = create_app()
