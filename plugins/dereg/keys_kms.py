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


def backup_key_provider():
    """The key provider for backups: the KMS key of DEREG_KMS_KEY_ID when set, else the keyring file."""
    key_id = os.environ.get("DEREG_KMS_KEY_ID")
    if key_id:
        return KmsKeyProvider(key_id)
    from dereg.keys import Keyring

    return Keyring.load()
