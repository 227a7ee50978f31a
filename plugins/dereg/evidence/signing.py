"""Signed JSON documents of the deployment (certificates, ledger checkpoints): the body and an
Ed25519 signature over its canonical JSON, with the public key that made it."""

from __future__ import annotations

import base64
from typing import Any

from dereg.evidence.artifacts import canonical_json
from dereg.keys import public_key_fingerprint, public_key_pem


def sign_document(body: dict[str, Any], keyring, *, document_format: str) -> dict[str, Any]:
    """`{"format", "body", "signature"}`, signed with the keyring's signing key."""
    key = keyring.signing_key()
    public = key.public_key()
    signature = key.sign(canonical_json(body).encode("utf-8"))
    return {
        "format": document_format,
        "body": body,
        "signature": {
            "alg": "Ed25519",
            "key_id": keyring.signing_key_id,
            "public_key_pem": public_key_pem(public),
            "fingerprint": public_key_fingerprint(public),
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }
