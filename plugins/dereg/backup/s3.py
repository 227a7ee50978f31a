"""Where backups go: an S3-compatible bucket and prefix, and a client for it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from dereg.errors import BackupError


@dataclass
class S3Location:
    endpoint_url: str | None
    access_key: str | None
    secret_key: str | None
    region: str
    bucket: str
    prefix: str

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
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
        region: str = "cn-north-1",
    ) -> S3Location:
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise BackupError(f"{url!r} is not an s3://BUCKET/PREFIX address")
        return cls(endpoint_url, access_key, secret_key, region, parsed.netloc, parsed.path.strip("/"))
