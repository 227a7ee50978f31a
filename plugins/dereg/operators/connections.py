"""Turn Airflow connections into what Dereg's plain functions take (SQLAlchemy URLs, S3 and SMTP settings)."""

from __future__ import annotations

from urllib.parse import quote

import sqlalchemy as sa

from dereg.errors import SourceError

_DIALECTS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}


def get_connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def connection_exists(conn_id: str) -> bool:
    try:
        get_connection(conn_id)
    except Exception:  # noqa: BLE001 - AirflowNotFoundException and friends
        return False
    return True


def scratch_url(conn_id: str | None) -> str | None:
    """Where a PostgreSQL backup is restored for verification: DEREG_SCRATCH_PG_URL, else a scratch
    schema on the source's own server (connection `conn_id`, when it is PostgreSQL and exists);
    None: scratch SQLite. Restore falls back to scratch SQLite when that server cannot be used."""
    from dereg import config

    if config.scratch_pg_url():
        return config.scratch_pg_url()
    if conn_id is None or not connection_exists(conn_id):
        return None
    url = sqlalchemy_url(get_connection(conn_id))
    return url if sa.make_url(url).get_backend_name() == "postgresql" else None


def sqlalchemy_url(conn) -> str:
    """SQLAlchemy URL of a database connection (extra `sqlalchemy_url` wins)."""
    extra = conn.extra_dejson or {}
    if extra.get("sqlalchemy_url"):
        return extra["sqlalchemy_url"]
    if conn.conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    driver = _DIALECTS.get(conn.conn_type)
    if driver is None:
        raise SourceError(
            f"connection {conn.conn_id} has type {conn.conn_type!r}, which Dereg cannot read yet; use "
            "postgres, mysql or sqlite, or give the SQLAlchemy URL in the connection's extra as sqlalchemy_url"
        )
    auth = ""
    if conn.login:
        auth = quote(conn.login, safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        auth += "@"
    port = f":{conn.port}" if conn.port else ""
    suffix = "?charset=utf8mb4" if driver.startswith("mysql") else ""
    return f"{driver}://{auth}{conn.host or '127.0.0.1'}{port}/{conn.schema or ''}{suffix}"


def source_engine(conn_id: str) -> sa.engine.Engine:
    """Engine for a source database; statement parameters never appear in error messages."""
    return sa.create_engine(sqlalchemy_url(get_connection(conn_id)), hide_parameters=True, pool_pre_ping=True)


def s3_location(conn_id: str, backup_spec):
    from dereg.backup.s3 import S3Location

    conn = get_connection(conn_id)
    extra = conn.extra_dejson or {}
    endpoint = extra.get("endpoint_url") or (extra.get("service_config", {}).get("s3", {}) or {}).get(
        "endpoint_url"
    )
    return S3Location(
        endpoint_url=endpoint,
        access_key=conn.login or extra.get("aws_access_key_id"),
        secret_key=conn.password or extra.get("aws_secret_access_key"),
        region=backup_spec.region,
        bucket=backup_spec.bucket,
        prefix=backup_spec.prefix,
    )


def smtp_settings(conn_id: str):
    from dereg.notify.deliver import SmtpSettings

    conn = get_connection(conn_id)
    extra = conn.extra_dejson or {}
    # Same extras as Airflow's SMTP provider: TLS and SSL are on unless disabled.
    ssl = not bool(extra.get("disable_ssl", False))
    starttls = not bool(extra.get("disable_tls", False)) and not ssl
    return SmtpSettings(
        host=conn.host or "127.0.0.1",
        port=int(conn.port or (465 if ssl else 25)),
        user=conn.login or None,
        password=conn.password or None,
        starttls=starttls,
        ssl=ssl,
        timeout=float(extra.get("timeout", 30)),
    )
