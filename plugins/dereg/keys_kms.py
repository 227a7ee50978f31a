"""A key provider backed by a KMS key (AWS KMS or a service speaking its API), behind the same three
methods as the local keyring (`wrap_data_key`, `unwrap_data_key`, `active_kek_id`).

The data key of each backup is wrapped with KMS `Encrypt` under the configured key and unwrapped
with `Decrypt`; the key material never leaves the KMS. The encryption context binds the wrapped
key to its purpose, so a ciphertext made for something else does not unwrap here. `kek_id` is
`kms:<key ARN>` (the ARN KMS answers with, so a later change of an alias does not matter).

Chosen by `DEREG_KMS_KEY_ID` (a key id, ARN or `alias/...`); endpoint and credentials from the
standard AWS environment (`AWS_ENDPOINT_URL_KMS` for a KMS other than AWS's, `AWS_REGION`...).
"""

from __future__ import annotations

import os

from dereg.errors import KeyringError

PREFIX = "kms:"
CONTEXT = {"purpose": "dereg-backup-data-key"}


class KmsKeyProvider:
    wrap_name = "AWS KMS Encrypt (encryption context purpose=dereg-backup-data-key)"
    #: retired key-encryption keys waiting for destruction: none here, the KMS keeps a rotated key's
    #: older material (it still decrypts) for as long as the key exists, and never hands it out
    retired: dict[str, str] = {}

    def __init__(
        self, key_id: str, *, client=None, endpoint_url: str | None = None, region: str | None = None
    ):
        if not key_id:
            raise KeyringError("no KMS key given: set DEREG_KMS_KEY_ID to a key id, key ARN or alias/NAME")
        self.key_id = key_id.removeprefix(PREFIX)
        if client is None:
            from dereg.connections import DEFAULT_REGION, aws_client

            client = aws_client(
                "kms",
                endpoint_url=endpoint_url,
                region=region
                or os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or DEFAULT_REGION,
            )
        self.client = client

    def active_kek_id(self) -> str:
        return PREFIX + self.key_id

    def _refused(self, exc: Exception, doing: str, key: str) -> KeyringError:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return KeyringError(
                f"the KMS at {self.client.meta.endpoint_url} is unreachable while trying to {doing} "
                f"({type(exc).__name__}); check AWS_ENDPOINT_URL_KMS and the network"
            )
        code = exc.response.get("Error", {}).get("Code", "?")
        hint = {
            "NotFoundException": "the key does not exist in this account and region",
            "DisabledException": "the key is disabled; enable it (or restore it from pending deletion)",
            "KMSInvalidStateException": "the key is pending deletion or not usable",
            "AccessDeniedException": "the credentials may not use this key (kms:Encrypt / kms:Decrypt)",
            "InvalidCiphertextException": "the wrapped key was altered or made under another key or context",
            "IncorrectKeyException": "the wrapped key was made under another KMS key",
        }.get(code, "see the KMS key's policy and state")
        return KeyringError(f"KMS key {key} refused to {doing} ({code}): {hint}")

    def wrap_data_key(self, data_key: bytes, kek_id: str | None = None) -> tuple[str, bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        key = (kek_id or self.active_kek_id()).removeprefix(PREFIX)
        try:
            answer = self.client.encrypt(KeyId=key, Plaintext=data_key, EncryptionContext=CONTEXT)
        except (BotoCoreError, ClientError) as exc:
            raise self._refused(exc, "wrap a backup's data key", key) from None
        return PREFIX + answer["KeyId"], answer["CiphertextBlob"]

    def unwrap_data_key(self, kek_id: str, wrapped: bytes, *, what: str = "data key") -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        if not kek_id.startswith(PREFIX):
            raise KeyringError(
                f"{what} is wrapped by keyring key {kek_id}, not by a KMS key: unset DEREG_KMS_KEY_ID and "
                "point DEREG_KEYRING at the keyring the backup was made with"
            )
        key = kek_id.removeprefix(PREFIX)
        try:
            answer = self.client.decrypt(CiphertextBlob=wrapped, KeyId=key, EncryptionContext=CONTEXT)
        except (BotoCoreError, ClientError) as exc:
            raise self._refused(exc, f"unwrap {what}", key) from None
        return answer["Plaintext"]

    # --- rotation (dereg.rotation) ----------------------------------------------------------
    def rotate(self, *, grace_days: int, now) -> tuple[str, str]:
        """Rotate the KMS key's material on demand (`RotateKeyOnDemand`): the key id stays, new wraps
        use the new material, older material stays inside the KMS and still decrypts. `grace_days`
        does not apply (the KMS keeps older material as long as the key). Returns (id, id)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.rotate_key_on_demand(KeyId=self.key_id)
        except (BotoCoreError, ClientError) as exc:
            raise self._refused(exc, "rotate its key material (kms:RotateKeyOnDemand)", self.key_id) from None
        return self.active_kek_id(), self.active_kek_id()

    def current_since(self):
        """When the key's current material became current (its latest rotation), or None if it was
        never rotated: a data key wrapped before then is re-wrapped by `dereg.rotation`."""
        from botocore.exceptions import BotoCoreError, ClientError

        latest, marker = None, None
        try:
            while True:
                page = self.client.list_key_rotations(
                    KeyId=self.key_id, **({"Marker": marker} if marker else {})
                )
                for rotation in page.get("Rotations", []):
                    when = rotation["RotationDate"]
                    latest = when if latest is None or when > latest else latest
                if not page.get("Truncated"):
                    break
                marker = page["NextMarker"]
        except (BotoCoreError, ClientError) as exc:
            raise self._refused(exc, "list its rotations (kms:ListKeyRotations)", self.key_id) from None
        return latest

    def rewrap(self, kek_id: str, wrapped: bytes, *, what: str = "data key") -> tuple[str, bytes]:
        """Re-wrap under the current material with `ReEncrypt`: the data key never leaves the KMS."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not kek_id.startswith(PREFIX):
            # wrapped by a keyring key: only the keyring can unwrap it
            raise KeyringError(
                f"{what} is wrapped by keyring key {kek_id}: re-wrap it with the keyring "
                "(unset DEREG_KMS_KEY_ID) before moving backups to a KMS key"
            )
        try:
            answer = self.client.re_encrypt(
                CiphertextBlob=wrapped,
                SourceEncryptionContext=CONTEXT,
                SourceKeyId=kek_id.removeprefix(PREFIX),
                DestinationKeyId=self.key_id,
                DestinationEncryptionContext=CONTEXT,
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._refused(exc, f"re-wrap {what} (kms:ReEncrypt*)", self.key_id) from None
        return PREFIX + answer["KeyId"], answer["CiphertextBlob"]


def backup_key_provider(keyring_path=None):
    """The key provider for backups: the KMS key of DEREG_KMS_KEY_ID when set, else the keyring file
    (`keyring_path`, else DEREG_KEYRING's)."""
    key_id = os.environ.get("DEREG_KMS_KEY_ID")
    if key_id:
        return KmsKeyProvider(key_id)
    from dereg.keys import Keyring

    return Keyring.load(keyring_path)
