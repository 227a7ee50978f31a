"""Signing, verifying and writing the certificate of erasure.

A certificate is `{"format", "body", "signature"}`: the Ed25519 signature covers the canonical JSON
of the body (sorted keys, no spaces, UTF-8), so anyone with the public key can verify it offline.
The body cites ledger entries by id and hash; given the compliance store, verification also checks
that those entries exist unchanged and that the ledger's chain is intact, and given the off-site
locations of the ledger's signed checkpoints (`evidence.checkpoints`), that the ledger matches them
and that every cited entry is anchored by one. Without a pinned public key the signature only shows
that the certificate is intact: `signer_authenticated` is then False.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dereg.evidence.artifacts import canonical_json
from dereg.evidence.signing import sign_document
from dereg.keys import load_public_key_pem, public_key_fingerprint

FORMAT = "dereg-certificate/1"


@dataclass
class CertificateVerification:
    ok: bool
    problems: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    #: the signing key was checked against a pinned public key (not only taken from the certificate)
    signer_authenticated: bool = False


def sign_certificate(body: dict[str, Any], keyring) -> dict[str, Any]:
    return sign_document(body, keyring, document_format=FORMAT)


def verify_certificate(
    cert: Any,
    *,
    public_key: Ed25519PublicKey | str | None = None,
    store=None,
    chain=None,
    checkpoints: list | None = None,
) -> CertificateVerification:
    """Check the signature (against `public_key` when given) and, with `store`, the ledger evidence.

    `chain`: the store's `Ledger.verify()` result when the caller already has it (checking many
    certificates against one ledger recomputes the chain once, not once per certificate).
    `checkpoints`: `S3Location`s of the ledger's signed checkpoints (needs `store`); they are
    checked against the pinned key, else the certificate's own."""
    result = CertificateVerification(ok=False)
    problems, checks = result.problems, result.checks
    if not isinstance(cert, dict) or cert.get("format") != FORMAT or not isinstance(cert.get("body"), dict):
        problems.append(f"not a Dereg certificate (expected a JSON object with format {FORMAT!r} and a body)")
        return result
    sig = cert.get("signature") or {}
    try:
        embedded = load_public_key_pem(sig["public_key_pem"])
        value = base64.b64decode(sig["value"], validate=True)
    except Exception as exc:  # noqa: BLE001 - any malformation is a problem to report, not a crash
        problems.append(f"the signature block is malformed ({type(exc).__name__})")
        return result
    if public_key is not None:
        pinned = load_public_key_pem(public_key) if isinstance(public_key, str) else public_key
        if public_key_fingerprint(pinned) != public_key_fingerprint(embedded):
            problems.append(
                f"signed by a different key (fingerprint {public_key_fingerprint(embedded)}), not the "
                f"pinned key {public_key_fingerprint(pinned)}"
            )
            return result
        checks.append(f"signing key matches the pinned public key {public_key_fingerprint(pinned)}")
        result.signer_authenticated = True
    else:
        pinned = embedded
        checks.append(
            f"signing key {public_key_fingerprint(embedded)} taken from the certificate itself: the signer is "
            "NOT authenticated (pin the deployment's key with --public-key to check who signed)"
        )
    if sig.get("fingerprint") != public_key_fingerprint(embedded):
        problems.append("the fingerprint in the signature block does not match its public key")
    try:
        embedded.verify(value, canonical_json(cert["body"]).encode("utf-8"))
        checks.append("Ed25519 signature over the body is valid")
    except InvalidSignature:
        problems.append("the signature does not match the body: the certificate was altered after signing")
    if store is not None:
        _check_ledger(cert["body"], store, problems, checks, chain)
        if checkpoints:
            _check_anchored(cert["body"], store, checkpoints, pinned, problems, checks)
    result.ok = not problems
    return result


def _check_anchored(body: dict, store, locations: list, key, problems: list[str], checks: list[str]) -> None:
    """The ledger matches its checkpoints in each location, and every cited entry is anchored."""
    from dereg.evidence.checkpoints import compare_with_checkpoints
    from dereg.evidence.ledger import Ledger

    anchored = 0
    for location in locations:
        comparison = compare_with_checkpoints(store, location, key)
        problems.extend(comparison.problems)
        checks.extend(comparison.checks)
        anchored = max(anchored, comparison.anchored_seq)
    ledger = Ledger(store)
    cited = [ledger.get(item.get("entry_id", "")) for item in (body.get("ledger") or {}).get("entries") or []]
    last = max((e.seq for e in cited if e is not None), default=0)
    if last and last > anchored:
        problems.append(
            f"the certificate cites ledger entry {last}, after the latest checkpoint (entry {anchored}): its "
            "evidence is not anchored off-site"
        )
    elif last:
        checks.append(
            f"every ledger entry the certificate cites is anchored by a checkpoint (up to entry {anchored})"
        )


def _check_ledger(body: dict, store, problems: list[str], checks: list[str], chain=None) -> None:
    import sqlalchemy as sa

    from dereg.evidence.ledger import Ledger
    from dereg.evidence.ledger import ledger as ledger_table

    ledger = Ledger(store)
    cited = (body.get("ledger") or {}).get("entries") or []
    missing = 0
    for item in cited:
        entry = ledger.get(item.get("entry_id", ""))
        if entry is None:
            problems.append(
                f"cited ledger entry {item.get('entry_id')} ({item.get('stage')}) is not in the ledger"
            )
            missing += 1
        elif entry.hash != item.get("hash"):
            problems.append(f"cited ledger entry {item.get('entry_id')} has a different hash in the ledger")
            missing += 1
    if cited and not missing:
        checks.append(f"all {len(cited)} cited ledger entries are in the ledger with the same hashes")
    verification = chain if chain is not None else ledger.verify()
    if verification.ok:
        checks.append(f"ledger hash chain intact ({verification.entries_checked} entries)")
    else:
        problems.append(f"the ledger's hash chain is broken: {verification.reason}")
    head_hash = (body.get("ledger") or {}).get("head_hash")
    if head_hash:
        with store.connect() as conn:
            in_chain = conn.execute(
                sa.select(ledger_table.c.seq).where(ledger_table.c.hash == head_hash).limit(1)
            ).first()
        if in_chain is not None:
            checks.append("the ledger head cited by the certificate is in the chain")
        else:
            problems.append("the ledger head hash cited by the certificate is not in the ledger")


# --- the readable copy ---------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;max-width:980px;margin:2em auto;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.4em 0}td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top;font-size:.92em}th{background:#f4f6f8;width:28%}code{font-size:.9em}
.dry{background:#fff3cd;padding:.6em;border:1px solid #e0c36b}"""


def _render(value: Any) -> str:
    """Any JSON value as HTML, every string escaped."""
    if isinstance(value, dict):
        if not value:
            return "<em>—</em>"
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{_render(v)}</td></tr>" for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        if not value:
            return "<em>—</em>"
        return "<ul>" + "".join(f"<li>{_render(v)}</li>" for v in value) + "</ul>"
    if value is None:
        return "<em>—</em>"
    return html.escape(str(value))


def render_html(cert: dict[str, Any], json_name: str) -> str:
    body = cert["body"]
    sig = cert["signature"]
    sections = [
        ("Company / 公司", body.get("company")),
        ("Legal basis / 法律依据", body.get("legal_basis")),
        (
            "Run / 运行",
            {
                k: body.get(k)
                for k in (
                    "run_id",
                    "reason",
                    "operator",
                    "approver",
                    "approved_plan_hash",
                    "started_at",
                    "finished_at",
                    "tool",
                )
            },
        ),
        ("Data stores / 数据存储", body.get("stores")),
        ("Notices / 通知", body.get("notices")),
        ("Backup kept / 保留的备份", body.get("backup_kept")),
        (
            "Verification / 验证",
            {"method": body.get("verification_method"), "result": body.get("verification_result")},
        ),
        ("Ledger evidence / 账本证据", body.get("ledger")),
        (
            "Signature / 签名",
            {
                "algorithm": sig.get("alg"),
                "key id": sig.get("key_id"),
                "public key fingerprint": sig.get("fingerprint"),
            },
        ),
    ]
    parts = [
        f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(body.get('title', ''))}"
        f"</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(body.get('title', ''))}</h1>",
    ]
    if body.get("dry_run"):
        parts.append("<p class='dry'>This is a dry run: nothing was erased. 演练：未删除任何数据。</p>")
    for title, value in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{_render(value)}")
    parts.append(
        f"<h2>How to verify / 如何验证</h2><p><code>dereg verify-certificate {html.escape(json_name)} "
        "--public-key signing-key.pem</code> checks the signature offline; add <code>--store URL</code> to "
        "check the cited ledger entries. This page is a readable copy; the JSON file is what is signed.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_certificate(cert: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    html_path = out_dir / f"{stem}.html"
    json_path.write_text(
        json.dumps(cert, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
    html_path.write_text(render_html(cert, json_path.name), encoding="utf-8")
    return json_path, html_path


def load_certificate(path: Path) -> Any:
    from dereg.errors import CertificateError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CertificateError(f"certificate file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CertificateError(f"certificate file {path} is not valid JSON ({exc})") from None
