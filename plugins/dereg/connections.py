"""Every client Dereg uses (S3, SMTP, database) is made here, from an Airflow connection or, in the
`dereg` command line, from explicit arguments.

Two layers. The builders (`aws_client`, `s3_client`, `database_engine`) take explicit arguments
(endpoint, keys, region, URL) and import no Airflow: the CLI calls them with its own arguments.
The connection functions (`s3_location`, `database_url`, `source_engine`, `smtp_hook`,
`describe_store`) read an Airflow connection through the providers' hooks (the amazon provider's
`S3Hook` connection wrapper for endpoint, region, credentials and `service_config`; the postgres
provider's `PostgresHook.sqlalchemy_url`; the smtp provider's hook, subclassed as `NoticeSmtpHook`)
and end in those same builders. Airflow is imported inside them only, so `dereg.cli` starts without it.

A connection that cannot work as configured (unknown type, no host, no database, no bucket) raises
`ConnectionProblem`, which says what to change; "unreachable" is kept for servers that do not answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import sqlalchemy as sa

from dereg.errors import BackupError, SourceError

if TYPE_CHECKING:
    from dereg.notify.smtp import NoticeSmtpHook

#: the S3 client's defaults, the same for every caller: path addressing (SeaweedFS and most
#: S3-compatible stores), short connect timeout so preflight answers quickly, standard retries
S3_CONFIG: dict[str, Any] = {
    "signature_version": "s3v4",
    "s3": {"addressing_style": "path"},
    "connect_timeout": 5,
    "read_timeout": 60,
    "retries": {"max_attempts": 3, "mode": "standard"},
}
#: keys of a connection's `service_config.s3` that are botocore S3 settings (the rest, such as
#: endpoint_url, is read by the amazon provider's connection wrapper)
_BOTOCORE_S3_KEYS = (
    "addressing_style",
    "use_accelerate_endpoint",
    "payload_signing_enabled",
    "use_dualstack_endpoint",
    "us_east_1_regional_endpoint",
)
DEFAULT_REGION = "cn-north-1"
#: SQLAlchemy driver of each database connection type Dereg reads
DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
DATABASE_TYPES = (*DRIVERS, "sqlite")
S3_TYPES = ("aws",)
SMTP_TYPES = ("smtp",)


class ConnectionProblem(SourceError):
    """An Airflow connection that cannot work as configured; the message says what to change."""


# --- builders: explicit arguments, no Airflow -------------------------------------------------------


def botocore_config(s3: dict[str, Any] | None = None, overrides=None):
    """The one botocore `Config` of every S3 client: `S3_CONFIG`, the connection's botocore S3
    settings (`service_config.s3`, e.g. addressing_style) and `config_kwargs` (a `Config`) on top."""
    from botocore.config import Config

    settings = {
        **S3_CONFIG,
        "s3": {**S3_CONFIG["s3"], **{k: v for k, v in (s3 or {}).items() if k in _BOTOCORE_S3_KEYS}},
    }
    config = Config(**settings)
    return config.merge(overrides) if overrides is not None else config


def aws_client(
    service: str,
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    region: str | None = None,
    config=None,
):
    """An AWS client (botocore's, which boto3's clients are). Keys left None fall back to botocore's
    own chain (environment, profile, role). Made through botocore directly: importing boto3 costs a
    twentieth of a second of every `dereg` command (s3transfer, multiprocessing) and none of its
    additions are used."""
    import botocore.session

    session = botocore.session.Session()
    session.register_component("data_loader", _data_loader(session))
    return session.create_client(
        service,
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key or None,
        aws_secret_access_key=secret_key or None,
        aws_session_token=session_token or None,
        region_name=region or None,
        config=config,
    )


_LOADER_LOCK = threading.Lock()
_LOADER: list = []


def _data_loader(session):
    """botocore's loader of service models, one per process: a new session's own loader reads and
    parses the S3 model's JSON again (about 0.1 s of CPU per client), while a loader keeps what it
    parsed. Clients are made per use and per thread, so that parse was paid over and over."""
    with _LOADER_LOCK:
        if not _LOADER:
            _LOADER.append(session.get_component("data_loader"))
        return _LOADER[0]


def s3_client(
    *,
    endpoint_url: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    region: str | None = DEFAULT_REGION,
    service_config: dict[str, Any] | None = None,
    config_overrides=None,
):
    """The S3 client of the backup store, object sources and `dereg` commands alike."""
    return aws_client(
        "s3",
        endpoint_url=endpoint_url,
        access_key=access_key,
        secret_key=secret_key,
        session_token=session_token,
        region=region,
        config=botocore_config(service_config, config_overrides),
    )


def s3_location_from_env(url: str) -> S3Location:
    """An s3://BUCKET/PREFIX with the endpoint, keys and region of the standard AWS environment
    variables: how the `dereg` commands reach a store."""
    import os

    return S3Location.from_url(
        url,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        session_token=os.environ.get("AWS_SESSION_TOKEN"),
        region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION,
    )


def database_engine(url: str | sa.URL, *, what: str = "database") -> sa.engine.Engine:
    """Engine for a source database; statement parameters never appear in error messages."""
    from dereg.dialects import normalize_url

    try:
        return sa.create_engine(normalize_url(url), hide_parameters=True, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConnectionProblem(
            f"{what}: {display_url(url)} is not a usable database URL ({type(exc).__name__}); use a "
            "SQLAlchemy URL such as postgresql+psycopg2://user@host/db, mysql+pymysql://user@host/db "
            "or sqlite:///file.db"
        ) from None


def display_url(url: str | sa.URL) -> str:
    """A database URL without its password."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(unparseable URL)"


# --- where a bucket is ---------------------------------------------------------------------------


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

    def error(self, exc: Exception, doing: str) -> BackupError:
        """What a failed call to this store means for an operator: refused (with the store's error
        code) or unreachable, what was being done and what to check; never the request itself."""
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "?")
            return BackupError(
                f"S3 store {self.describe()} refused to {doing} ({code}). Check the bucket, the "
                "credentials of the backup connection and their permissions."
            )
        return BackupError(
            f"S3 store {self.describe()} is unreachable while trying to {doing} "
            f"({type(exc).__name__}). Check that the endpoint is up and the backup connection's "
            "endpoint_url is right."
        )

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


# --- from an Airflow connection -------------------------------------------------------------------


def get_connection(conn_id: str):
    """The Airflow connection `conn_id` (AirflowNotFoundException when there is none)."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def connection_exists(conn_id: str) -> bool:
    try:
        get_connection(conn_id)
    except Exception:  # noqa: BLE001 - AirflowNotFoundException and friends
        return False
    return True


def _wrong_type(conn, kinds: tuple[str, ...], what: str) -> ConnectionProblem:
    hint = ""
    if conn.conn_type in (None, "", "generic"):
        hint = (
            "; a connection stored as 'generic' was added with a type this Airflow did not know: add it "
            f"again with --conn-type {kinds[0]} (or pick that type in the UI form)"
        )
    return ConnectionProblem(
        f"connection {conn.conn_id!r} has type {conn.conn_type!r}, which is not {what} "
        f"(expected {' or '.join(repr(k) for k in kinds)}){hint}"
    )


def database_url(conn) -> sa.URL:
    """SQLAlchemy URL of a database connection: the extra `sqlalchemy_url` when given (any database
    SQLAlchemy reads), else from the typed connection through its provider."""
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        try:
            return sa.make_url(extra["sqlalchemy_url"])
        except sa.exc.ArgumentError:
            raise ConnectionProblem(
                f"connection {conn.conn_id!r}: its extra sqlalchemy_url is not a SQLAlchemy URL"
            ) from None
    kind = conn.conn_type
    if kind == "sqlite":
        if not conn.host:
            raise ConnectionProblem(
                f"connection {conn.conn_id!r} (sqlite) names no database file: put its path in Host"
            )
        return sa.URL.create("sqlite", database=conn.host)
    if kind not in DRIVERS:
        problem = _wrong_type(conn, ("postgres", "mysql", "sqlite"), "a database Dereg reads")
        raise ConnectionProblem(
            f"{problem}; for another database give its SQLAlchemy URL in the connection's extra as sqlalchemy_url"
        )
    if not conn.host:
        raise ConnectionProblem(
            f"connection {conn.conn_id!r} ({kind}) names no host: set its Host (--conn-host)"
        )
    if not conn.schema:
        raise ConnectionProblem(
            f"connection {conn.conn_id!r} ({kind}) names no database: set its Schema (--conn-schema) to "
            "the database to read"
        )
    if DRIVERS[kind].startswith("postgresql"):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        # the provider's URL (IAM tokens, sqlalchemy_query), on the psycopg2 driver Dereg's
        # PostgreSQL code uses (the provider would pick psycopg 3 when it is installed)
        url = PostgresHook(postgres_conn_id=conn.conn_id, connection=conn).sqlalchemy_url
        return url.set(drivername=DRIVERS[kind])
    # The MySQL provider's hook has no sqlalchemy_url, and its get_uri puts every extra in the query
    # string; the fields it reads are the connection's own, so the URL is made from them directly.
    return sa.URL.create(
        DRIVERS[kind],
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host,
        port=int(conn.port) if conn.port else None,
        database=conn.schema,
        query={"charset": str(extra.get("charset") or "utf8mb4")},
    )


def sqlalchemy_url(conn) -> str:
    """`database_url` as a string with its password (what `create_engine` takes)."""
    return database_url(conn).render_as_string(hide_password=False)


def source_engine(conn_id: str) -> sa.engine.Engine:
    """Engine for the database of Airflow connection `conn_id`."""
    return database_engine(database_url(get_connection(conn_id)), what=f"connection {conn_id!r}")


def scratch_url(conn_id: str | None) -> str | None:
    """Where a PostgreSQL backup is restored for verification: DEREG_SCRATCH_PG_URL, else a scratch
    schema on the source's own server (connection `conn_id`, when it is PostgreSQL and exists);
    None: scratch SQLite. Restore falls back to scratch SQLite when that server cannot be used."""
    from dereg import config

    if config.scratch_pg_url():
        return config.scratch_pg_url()
    if conn_id is None or not connection_exists(conn_id):
        return None
    try:
        url = database_url(get_connection(conn_id))
    except ConnectionProblem:
        return None
    from dereg.dialects import dialect_for

    # a pg-copy-text backup restores into a server that speaks COPY text
    return url.render_as_string(hide_password=False) if dialect_for(url).copy_text else None


def describe_store(conn_id: str) -> dict[str, Any]:
    """Where a source lives, for the certificate: type and URL without credentials."""
    conn = get_connection(conn_id)
    url = database_url(conn)
    from dereg.dialects import dialect_for

    location = dialect_for(url).describe_location(url)
    # a connection typed by its extra sqlalchemy_url alone (e.g. "generic") is named by its database
    kind = conn.conn_type if conn.conn_type in DATABASE_TYPES else url.get_backend_name()
    return {"conn_id": conn_id, "type": kind, "location": location}


def s3_location(
    conn_id: str, *, bucket: str, prefix: str = "", region: str | None = None, what: str = "bucket"
) -> S3Location:
    """Bucket and prefix reached through the Airflow connection `conn_id` (type aws), read by the
    amazon provider's connection wrapper: keys (login/password or extra), endpoint (extra
    endpoint_url or service_config.s3.endpoint_url), region_name (else `region`), service_config."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    conn = get_connection(conn_id)
    if conn.conn_type not in S3_TYPES:
        raise _wrong_type(conn, S3_TYPES, "an S3 (Amazon Web Services) connection")
    if not bucket:
        raise ConnectionProblem(f"{what}: no bucket given for connection {conn_id!r}")
    wrapper = S3Hook(aws_conn_id=conn_id).conn_config
    if wrapper.role_arn:
        raise ConnectionProblem(
            f"connection {conn_id!r} asks to assume role {wrapper.role_arn}, which Dereg does not do yet: "
            "give the keys of a user allowed on the bucket (login and password)"
        )
    return S3Location(
        endpoint_url=wrapper.get_service_endpoint_url("s3"),
        access_key=wrapper.aws_access_key_id,
        secret_key=wrapper.aws_secret_access_key,
        session_token=wrapper.aws_session_token,
        region=wrapper.region_name or region or DEFAULT_REGION,
        bucket=bucket,
        prefix=prefix,
        service_config=dict(wrapper.get_service_config("s3")),
        config_overrides=wrapper.botocore_config,
    )


def smtp_hook(conn_id: str) -> NoticeSmtpHook:
    """The SMTP provider's hook (as `NoticeSmtpHook`) for connection `conn_id`, not yet opened."""
    from dereg.notify.smtp import NoticeSmtpHook

    conn = get_connection(conn_id)
    if conn.conn_type not in SMTP_TYPES:
        raise _wrong_type(conn, SMTP_TYPES, "an SMTP connection")
    if not conn.host:
        raise ConnectionProblem(f"connection {conn_id!r} (smtp) names no host: set its Host (--conn-host)")
    return NoticeSmtpHook(smtp_conn_id=conn_id)


def backup_location(conn_id: str, backup_spec) -> S3Location:
    """The manifest's backup store (`backup:` bucket, prefix and region) through connection `conn_id`."""
    return s3_location(
        conn_id,
        bucket=backup_spec.bucket,
        prefix=backup_spec.prefix,
        region=backup_spec.region,
        what="backup.bucket",
    )


def object_client(source, backup_spec=None):
    """S3 client for an object source (a bucket of customer files) through its connection; the
    region is the connection's region_name, else the manifest's backup region."""
    region = backup_spec.region if backup_spec is not None else None
    return s3_location(
        source.conn_id, bucket=source.bucket, region=region, what="object_sources.bucket"
    ).client()
