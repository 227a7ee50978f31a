"""The local key provider: a keyring file holding key-encryption keys, the certificate signing key
and the pseudonymisation key.

Data keys are generated fresh per backup and only ever stored wrapped (AES key wrap, RFC 3394) by
a key-encryption key (KEK) from here. The KMS-backed provider (`dereg.keys_kms`, chosen by
`DEREG_KMS_KEY_ID`) implements the same three methods (`wrap_data_key`, `unwrap_data_key`,
`active_kek_id`).

File layout (JSON, mode 0600)::

    {"version": 1,
     "active_kek": "kek-...",
     "keks": {"kek-...": "<base64 32 bytes>"},
     "signing_key": {"id": "sig-...", "ed25519": "<base64 32-byte private seed>"},
     "pseudonym_key": {"id": "psn-...", "key": "<base64 32 bytes>"},
     "retired": {"kek-...": "<ISO date after which it may be destroyed>"}}

`retired` lists KEKs replaced by a rotation (`dereg.rotation`): they still unwrap until destroyed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dereg import config
from dereg.errors import KeyringError
from dereg.redact import reference_token

DATA_KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def new_data_key() -> bytes:
    """A fresh random AES-256 data key."""
    return secrets.token_bytes(DATA_KEY_BYTES)


def public_key_fingerprint(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key_pem(text: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(text.encode("ascii"))
    if not isinstance(key, Ed25519PublicKey):
        raise KeyringError("the public key given is not an Ed25519 key")
    return key


class KeyringPermissionWarning(UserWarning):
    """The keyring file can be read or written by other users than its owner."""


def _warn_if_readable_by_others(path: Path) -> None:
    """The keyring holds every key that opens the backups: only its owner may read it."""
    mode = path.stat().st_mode
    if os.name == "posix" and mode & 0o077:
        warnings.warn(
            KeyringPermissionWarning(
                f"keyring {path} is readable or writable by other users (mode {mode & 0o777:03o}); "
                f"anyone who can read it can decrypt every backup. Fix: chmod 600 {path}"
            ),
            stacklevel=3,
        )


@dataclass
class Keyring:
    """Keys loaded from a keyring file."""

    path: Path
    active_kek: str
    keks: dict[str, bytes]
    signing_key_id: str
    signing_seed: bytes
    pseudonym_key_id: str
    pseudonym_key: bytes
    #: retired KEK id -> ISO date after which it may be destroyed
    retired: dict[str, str] = field(default_factory=dict)

    # --- creation and loading -------------------------------------------------------------
    @classmethod
    def create(cls, path: Path | None = None, *, overwrite: bool = False) -> Keyring:
        """Write a new keyring file with fresh keys. Refuses to overwrite an existing one."""
        path = Path(path or config.keyring_path())
        if path.exists() and not overwrite:
            raise KeyringError(f"keyring {path} already exists; refusing to overwrite its keys")
        stamp = reference_token()
        ring = cls(
            path=path,
            active_kek=f"kek-{stamp}",
            keks={f"kek-{stamp}": secrets.token_bytes(32)},
            signing_key_id=f"sig-{stamp}",
            signing_seed=secrets.token_bytes(32),
            pseudonym_key_id=f"psn-{stamp}",
            pseudonym_key=secrets.token_bytes(32),
        )
        ring.save()
        return ring

    @classmethod
    def load(cls, path: Path | None = None) -> Keyring:
        path = Path(path or config.keyring_path())
        if not path.exists():
            raise KeyringError(
                f"keyring {path} does not exist. Create one with `dereg keyring init` "
                "or point DEREG_KEYRING at the company's keyring file."
            )
        _warn_if_readable_by_others(path)
        try:
            data = json.loads(path.read_text())
            return cls(
                path=path,
                active_kek=data["active_kek"],
                keks={k: _unb64(v) for k, v in data["keks"].items()},
                signing_key_id=data["signing_key"]["id"],
                signing_seed=_unb64(data["signing_key"]["ed25519"]),
                pseudonym_key_id=data["pseudonym_key"]["id"],
                pseudonym_key=_unb64(data["pseudonym_key"]["key"]),
                retired=dict(data.get("retired") or {}),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"keyring {path} is malformed ({type(exc).__name__}: {exc})") from None

    @classmethod
    def load_or_create(cls, path: Path | None = None) -> Keyring:
        path = Path(path or config.keyring_path())
        return cls.load(path) if path.exists() else cls.create(path)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": 1,
            "active_kek": self.active_kek,
            "keks": {k: _b64(v) for k, v in self.keks.items()},
            "signing_key": {"id": self.signing_key_id, "ed25519": _b64(self.signing_seed)},
            "pseudonym_key": {"id": self.pseudonym_key_id, "key": _b64(self.pseudonym_key)},
        }
        if self.retired:
            data["retired"] = dict(self.retired)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            # on disk before the rename: a crash right after a rotation must not leave an empty file
            # where the only copy of every key-encryption key was
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself
        finally:
            os.close(directory)

    # --- rotation -----------------------------------------------------------------------
    def rotate(self, *, grace_days: int, now) -> tuple[str, str]:
        """A fresh KEK becomes the active one; the previous one is retired (it still unwraps) and may be
        destroyed after `grace_days`. Saved at once. Returns (old id, new id)."""
        import datetime as dt

        old = self.active_kek
        new = f"kek-{reference_token()}"
        self.keks[new] = secrets.token_bytes(32)
        self.active_kek = new
        self.retired[old] = (now + dt.timedelta(days=grace_days)).isoformat()
        self.save()
        return old, new

    def destroy_kek(self, kek_id: str) -> None:
        """Remove a retired KEK from the keyring file for good (the caller checked nothing needs it)."""
        if kek_id == self.active_kek:
            raise KeyringError(f"{kek_id} is the active key-encryption key; rotate before destroying it")
        self.keks.pop(kek_id, None)
        self.retired.pop(kek_id, None)
        self.save()

    def current_since(self):
        """None: a keyring's KEKs are told apart by id, so a wrap is current when its KEK is active."""
        return None

    def rewrap(self, kek_id: str, wrapped: bytes, *, what: str = "data key") -> tuple[str, bytes]:
        """The data key wrapped by `kek_id` wrapped again under the active KEK."""
        return self.wrap_data_key(self.unwrap_data_key(kek_id, wrapped, what=what))

    # --- key provider interface ---------------------------------------------------------
    def active_kek_id(self) -> str:
        return self.active_kek

    def wrap_data_key(self, data_key: bytes, kek_id: str | None = None) -> tuple[str, bytes]:
        """Wrap a data key with a KEK; returns (kek_id, wrapped bytes)."""
        kek_id = kek_id or self.active_kek
        return kek_id, aes_key_wrap(self._kek(kek_id), data_key)

    def unwrap_data_key(self, kek_id: str, wrapped: bytes, *, what: str = "data key") -> bytes:
        try:
            return aes_key_unwrap(self._kek(kek_id), wrapped)
        except InvalidUnwrap:
            raise KeyringError(
                f"{what} does not unwrap with key-encryption key {kek_id} from {self.path}: "
                "the keyring holds a different key under that id (wrong keyring file?)"
            ) from None

    def _kek(self, kek_id: str) -> bytes:
        try:
            return self.keks[kek_id]
        except KeyError:
            raise KeyringError(
                f"key-encryption key {kek_id} is not in keyring {self.path} "
                f"(it holds {sorted(self.keks)}); use the keyring the backup was made with"
            ) from None

    # --- signing and pseudonyms --------------------------------------------------------
    def signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.signing_seed)

    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key().public_key()
