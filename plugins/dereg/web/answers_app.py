"""The customers' page: answer the closure notice, and download a requested copy.

Mounted by the Dereg Airflow plugin under `/dereg` on the Airflow API server. There is no login:
each link carries a signed token naming one recipient of one closure run, valid until the notice
window ends (copy links: until the copy expires). Pages are in Chinese first, then English, and
show no personal data, only the company's name and the options.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from dereg.notify import answers

OPTIONS = (
    ("copy", "获取我的数据副本", "Send me a copy of my data"),
    ("transfer", "将我的数据转移至承接机构", "Transfer my data to the successor organisation"),
    ("delete", "删除我的数据", "Delete my data"),
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em;line-height:1.6}}
label{{display:block;margin:.5em 0}}button{{font-size:1em;padding:.4em 1.2em}}</style></head>
<body>{body}</body></html>""",
        status_code=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _context():
    from dereg.evidence.store import open_store
    from dereg.keys import Keyring

    return open_store(), Keyring.load()


def _company_name(company_id: str) -> tuple[str, str]:
    from dereg.manifest import company_id_from_path, load_manifest, manifest_paths

    for path in manifest_paths():
        if company_id_from_path(path) == company_id:
            try:
                m = load_manifest(path)
                return m.name_zh, m.name_en
            except Exception:  # noqa: BLE001 - a broken manifest still lets the customer answer
                break
    return company_id, company_id


def _closed(store, claim) -> bool:
    from dereg.evidence.ledger import Ledger

    return (
        Ledger(store).latest(
            company_id=claim.company_id, run_id=claim.run_id, stage="erase", event="succeeded"
        )
        is not None
    )


def create_app() -> FastAPI:
    app = FastAPI(title="Dereg customer answers", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/answer/{token}", response_class=HTMLResponse)
    def show(token: str):
        store, keyring = _context()
        try:
            claim = answers.check_token(keyring.pseudonym_key, token, "answer")
        except answers.AnswerError as exc:
            return _page("链接无效 / Invalid link", f"<p>{html.escape(str(exc))}</p>", 403)
        zh, en = _company_name(claim.company_id)
        current = answers.current_answers(store, claim.company_id, claim.run_id).get(claim.ref)
        chosen = current["choice"] if current else "delete"
        options = "".join(
            f'<label><input type="radio" name="choice" value="{v}"{" checked" if v == chosen else ""}> '
            f"{html.escape(z)} / {html.escape(e)}</label>"
            for v, z, e in OPTIONS
        )
        already = (
            f"<p>您已于 {html.escape(current['answered_at'][:16])} 作出选择，可以更改。/ You answered on "
            f"{html.escape(current['answered_at'][:16])}; you may change it.</p>"
            if current
            else ""
        )
        return _page(
            f"{zh} / {en}",
            f"<h1>{html.escape(zh)}<br><small>{html.escape(en)}</small></h1>"
            f"<p>请在 {claim.expires:%Y-%m-%d} 前选择如何处理您的个人信息。/ Choose before "
            f"{claim.expires:%Y-%m-%d} what happens to your personal information.</p>{already}"
            f'<form method="post">{options}<button type="submit">提交 / Submit</button></form>',
        )

    @app.post("/answer/{token}", response_class=HTMLResponse)
    async def answer(token: str, request: Request):
        store, keyring = _context()
        try:
            claim = answers.check_token(keyring.pseudonym_key, token, "answer")
        except answers.AnswerError as exc:
            return _page("链接无效 / Invalid link", f"<p>{html.escape(str(exc))}</p>", 403)
        if _closed(store, claim):
            return _page(
                "已关闭 / Closed",
                "<p>数据已删除，无法再作选择。/ The data have been erased; answers are closed.</p>",
                409,
            )
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        choice = (form.get("choice") or [""])[0]
        if choice not in answers.CHOICES:
            return _page("请选择 / Please choose", "<p>请选择一项。/ Please choose one option.</p>", 400)
        answers.record_answer(
            store,
            company_id=claim.company_id,
            run_id=claim.run_id,
            ref=claim.ref,
            choice=choice,
            channel="page",
        )
        zh, en = next((z, e) for v, z, e in OPTIONS if v == choice)
        return _page(
            "已记录 / Recorded",
            f"<p>已记录您的选择：{html.escape(zh)}。/ Your choice is recorded: {html.escape(en)}.</p>",
        )

    @app.get("/copy/{token}")
    def download(token: str):
        from dereg.notify.fulfil import FulfilmentError, load_copy

        store, keyring = _context()
        try:
            claim = answers.check_token(keyring.pseudonym_key, token, "copy")
            data = load_copy(store, keyring, company_id=claim.company_id, run_id=claim.run_id, ref=claim.ref)
        except (answers.AnswerError, FulfilmentError) as exc:
            return _page("无法下载 / Not available", f"<p>{html.escape(str(exc))}</p>", 403)
        return Response(
            data,
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="{claim.company_id}-my-data.zip"',
                "Cache-Control": "no-store",
            },
        )

    return app


app = create_app()
