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
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from dereg.evidence.artifacts import canonical_json
from dereg.evidence.signing import sign_document
from dereg.keys import load_public_key_pem, public_key_fingerprint

FORMAT = "dereg-certificate/1"

log = logging.getLogger(__name__)


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


def write_certificate(cert: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write the signed JSON, the readable one-page document beside it (`stem.html`) and, where
    WeasyPrint can run, the same as `stem.pdf` (else the log says why). Returns the JSON and HTML paths."""
    from dereg.evidence.certificate_doc import PdfUnavailable, render_document, render_pdf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    html_path = out_dir / f"{stem}.html"
    json_path.write_text(
        json.dumps(cert, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )
    sha256 = hashlib.sha256(json_path.read_bytes()).hexdigest()
    document = render_document(cert, json_name=json_path.name, sha256=sha256)
    html_path.write_text(document, encoding="utf-8")
    try:
        (out_dir / f"{stem}.pdf").write_bytes(render_pdf(document))
    except PdfUnavailable as exc:
        log.warning("%s", exc)
    return json_path, html_path


def load_certificate(path: Path) -> Any:
    from dereg.errors import CertificateError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CertificateError(f"certificate file {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CertificateError(f"certificate file {path} is not valid JSON ({exc})") from None
