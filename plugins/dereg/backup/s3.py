"""Where backups go: an S3-compatible bucket and prefix, and how to reach it.

The client itself is made by `dereg.connections.s3_client`, the one S3 builder (an Airflow
connection reaches it through `dereg.connections.s3_location`, the `dereg` commands through
`s3_location_from_env`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from dereg.errors import BackupError


@dataclass
class S3Location:
    endpoint_url: str | None
    access_key: str | None
    secret_key: str | None = field(repr=False)
    region: str
    bucket: str
    prefix: str
    session_token: str | None = field(default=None, repr=False)
    #: the connection's `service_config.s3` (botocore S3 settings such as addressing_style)
    service_config: dict[str, Any] = field(default_factory=dict)
    #: a botocore Config from the connection's `config_kwargs`, merged over Dereg's defaults
    config_overrides: Any = None

    def client(self):
        """A new S3 client (one per thread: boto3 clients are made per use, not shared)."""
        from dereg.connections import s3_client

        return s3_client(
            endpoint_url=self.endpoint_url,
            access_key=self.access_key,
            secret_key=self.secret_key,
            session_token=self.session_token,
            region=self.region,
            service_config=self.service_config,
            config_overrides=self.config_overrides,
        )

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.endpoint_url or 'AWS'}"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        region: str = "cn-north-1",
    ) -> S3Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise BackupError(f"{url!r} is not an s3://BUCKET/PREFIX address")
        return cls(
            endpoint_url,
            access_key,
            secret_key,
            region,
            parsed.netloc,
            parsed.path.strip("/"),
            session_token=session_token,
        )
