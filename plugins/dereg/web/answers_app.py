"""The customers' page: answer the closure notice, and download a requested copy.

Mounted by the Dereg Airflow plugin under `/dereg` on the Airflow API server. There is no login:
each link carries a signed token naming one recipient of one closure run, valid until the notice
window ends (copy links: until the copy expires). Pages are in Chinese first, then English, and
show no personal data, only the company's name and the options.

The token is in the link's fragment (`/dereg/answer/#TOKEN`, `/dereg/copy/#TOKEN`), which browsers
never send: the page's small script reads it and POSTs it in the form body. So it never appears in
a request line, which the API server's access log (Airflow's `http.access` logger, at info level)
and any proxy in front of it record in full. Links with the token in the path (`/answer/TOKEN`,
`/copy/TOKEN`), in notices sent before, still work.
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


# Reads the token from the fragment, drops it from the address bar and history, and POSTs it.
_OPEN_SCRIPT = """<script>
(function () {
  var token = decodeURIComponent(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  if (!token) { document.getElementById("wait").hidden = true; document.getElementById("none").hidden = false; return; }
  var form = document.getElementById("open");
  form.elements.token.value = token;
  form.submit();
})();
</script>"""


def _opener(title: str) -> HTMLResponse:
    """The page a link opens: it holds no token and no data, only the script that posts the token."""
    return _page(
        title,
        f"<h1>{html.escape(title)}</h1>"
        '<form id="open" method="post"><input type="hidden" name="token"></form>'
        '<p id="wait">正在打开… / Opening…</p>'
        '<p id="none" hidden>请使用通知邮件中的完整链接。/ Please use the full link from your e-mail.</p>'
        "<noscript><p>此页面需要启用 JavaScript；您也可以直接回复通知邮件作出选择。/ This page needs "
        "JavaScript; you may also answer by replying to the notice e-mail.</p></noscript>" + _OPEN_SCRIPT,
    )


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _invalid(exc: Exception) -> HTMLResponse:
    return _page("链接无效 / Invalid link", f"<p>{html.escape(str(exc))}</p>", 403)


def _show(token: str, *, token_in_form: bool) -> HTMLResponse:
    store, keyring = _context()
    try:
        claim = answers.check_token(keyring.pseudonym_key, token, "answer")
    except answers.AnswerError as exc:
        return _invalid(exc)
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
    hidden = f'<input type="hidden" name="token" value="{html.escape(token)}">' if token_in_form else ""
    return _page(
        f"{zh} / {en}",
        f"<h1>{html.escape(zh)}<br><small>{html.escape(en)}</small></h1>"
        f"<p>请在 {claim.expires:%Y-%m-%d} 前选择如何处理您的个人信息。/ Choose before "
        f"{claim.expires:%Y-%m-%d} what happens to your personal information.</p>{already}"
        f'<form method="post">{hidden}{options}<button type="submit">提交 / Submit</button></form>',
    )


def _answer(token: str, choice: str) -> HTMLResponse:
    store, keyring = _context()
    try:
        claim = answers.check_token(keyring.pseudonym_key, token, "answer")
    except answers.AnswerError as exc:
        return _invalid(exc)
    if _closed(store, claim):
        return _page(
            "已关闭 / Closed",
            "<p>数据已删除，无法再作选择。/ The data have been erased; answers are closed.</p>",
            409,
        )
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


def _download(token: str) -> Response:
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


def create_app() -> FastAPI:
    app = FastAPI(title="Dereg customer answers", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/answer/", response_class=HTMLResponse)
    def open_answer():
        return _opener("您的选择 / Your choice")

    @app.post("/answer/", response_class=HTMLResponse)
    async def answer_posted(request: Request):
        """The token in the form: without a choice, the page to choose; with one, the answer."""
        form = _form(await request.body())
        if "choice" not in form:
            return _show(form.get("token", ""), token_in_form=True)
        return _answer(form.get("token", ""), form["choice"])

    @app.get("/copy/", response_class=HTMLResponse)
    def open_copy():
        return _opener("下载您的数据副本 / Download your copy")

    @app.post("/copy/")
    async def copy_posted(request: Request):
        return _download(_form(await request.body()).get("token", ""))

    # links with the token in the path, as notices sent before the fragment links carry them
    @app.get("/answer/{token}", response_class=HTMLResponse)
    def show(token: str):
        return _show(token, token_in_form=False)

    @app.post("/answer/{token}", response_class=HTMLResponse)
    async def answer(token: str, request: Request):
        return _answer(token, _form(await request.body()).get("choice", ""))

    @app.get("/copy/{token}")
    def download(token: str):
        return _download(token)

    return app


app = create_app()
