"""The connection layer: typed Airflow connections (as `airflow connections add` stores them, here
given as AIRFLOW_CONN_* JSON) become URLs and clients, and a wrong connection says what is wrong.
The same builders are exercised against real servers by the closure and CLI tests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sqlalchemy as sa

from dereg import connections as c
from dereg.connections import ConnectionProblem


@pytest.fixture
def conn(monkeypatch):
    """Define the Airflow connection `conn_id` the way the environment does."""

    def define(conn_id: str, **fields) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
        return conn_id

    return define


def test_a_typed_postgres_connection_becomes_a_psycopg2_url(conn):
    cid = conn(
        "pg",
        conn_type="postgres",
        host="db.internal",
        port=5433,
        login="reader",
        password="p@ss/w",
        schema="shop",
    )
    url = c.database_url(c.get_connection(cid))
    assert url.drivername == "postgresql+psycopg2"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.internal",
        5433,
        "reader",
        "p@ss/w",
        "shop",
    )
    assert sa.make_url(c.sqlalchemy_url(c.get_connection(cid))).password == "p@ss/w"


def test_a_typed_mysql_connection_becomes_a_pymysql_url_in_utf8mb4(conn):
    cid = conn("my", conn_type="mysql", host="127.0.0.1", login="root", schema="crm")
    url = c.database_url(c.get_connection(cid))
    assert url.drivername == "mysql+pymysql"
    assert (url.host, url.port, url.database, url.query) == ("127.0.0.1", None, "crm", {"charset": "utf8mb4"})


def test_sqlite_and_the_sqlalchemy_url_override(conn, tmp_path):
    path = str(tmp_path / "a.db")
    assert c.database_url(c.get_connection(conn("lite", conn_type="sqlite", host=path))).database == path
    override = conn(
        "other",
        conn_type="generic",
        extra={"sqlalchemy_url": "mssql+pyodbc://u:pw@h/db?driver=x"},
    )
    assert c.database_url(c.get_connection(override)).drivername == "mssql+pyodbc"


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"conn_type": "generic", "host": "h", "schema": "d"}, ["type 'generic'", "--conn-type postgres"]),
        ({"conn_type": "http", "host": "h", "schema": "d"}, ["type 'http'", "sqlalchemy_url"]),
        ({"conn_type": "postgres", "schema": "d"}, ["names no host", "--conn-host"]),
        ({"conn_type": "mysql", "host": "h"}, ["names no database", "--conn-schema"]),
        ({"conn_type": "sqlite"}, ["names no database file"]),
        ({"conn_type": "postgres", "extra": {"sqlalchemy_url": "not a url"}}, ["not a SQLAlchemy URL"]),
    ],
)
def test_a_wrong_database_connection_says_what_is_wrong(conn, fields, says):
    cid = conn("bad", **fields)
    with pytest.raises(ConnectionProblem) as err:
        c.source_engine(cid)
    assert "'bad'" in str(err.value)
    for text in says:
        assert text in str(err.value)
    assert "unreachable" not in str(err.value)


def test_the_certificate_describes_typed_stores_without_credentials(conn, tmp_path):
    pg = conn("pg", conn_type="postgres", host="db", port=5432, login="u", password="secret", schema="shop")
    my = conn("my", conn_type="mysql", host="maria", port=3306, login="root", password="secret", schema="crm")
    lite = conn("lite", conn_type="sqlite", host=str(tmp_path / "s.db"))
    assert c.describe_store(pg) == {
        "conn_id": "pg",
        "type": "postgres",
        "location": "postgresql://db:5432/shop",
    }
    assert c.describe_store(my) == {"conn_id": "my", "type": "mysql", "location": "mysql://maria:3306/crm"}
    assert c.describe_store(lite)["location"] == str(tmp_path / "s.db")
    assert "secret" not in json.dumps([c.describe_store(x) for x in (pg, my)])


def test_an_unusable_url_from_the_command_line_is_named_without_its_password():
    with pytest.raises(ConnectionProblem) as err:
        c.database_engine("nosuchdb://u:topsecret@h/d", what="SOURCE_URL")
    assert str(err.value).startswith("SOURCE_URL: nosuchdb://u:***@h/d is not a usable database URL")


def _s3(**extra):
    return {"conn_type": "aws", "login": "AKID", "password": "s3cr3t", "extra": extra}


def test_an_aws_connection_gives_endpoint_region_keys_and_one_config(conn):
    cid = conn("s3", **_s3(endpoint_url="http://127.0.0.1:9", region_name="eu-west-1"))
    location = c.s3_location(cid, bucket="b", prefix="p/", region="cn-north-1")
    assert (location.endpoint_url, location.access_key, location.secret_key) == (
        "http://127.0.0.1:9",
        "AKID",
        "s3cr3t",
    )
    assert location.region == "eu-west-1"  # the connection's region_name wins over the manifest's
    assert "s3cr3t" not in repr(location)
    client = location.client()
    assert client.meta.endpoint_url == "http://127.0.0.1:9" and client.meta.region_name == "eu-west-1"
    config = client.meta.config
    assert config.s3 == {"addressing_style": "path"}
    assert (config.connect_timeout, config.read_timeout) == (5, 60)
    assert config.retries == {"total_max_attempts": 4, "mode": "standard"}  # botocore: 3 retries


def test_service_config_and_config_kwargs_of_the_connection_are_honoured(conn):
    cid = conn(
        "s3",
        **_s3(
            service_config={"s3": {"endpoint_url": "http://127.0.0.1:8", "addressing_style": "virtual"}},
            config_kwargs={"read_timeout": 7},
        ),
    )
    location = c.s3_location(cid, bucket="b", region="cn-north-1")
    assert location.region == "cn-north-1"  # no region_name: the manifest's
    client = location.client()
    assert client.meta.endpoint_url == "http://127.0.0.1:8"
    assert client.meta.config.s3 == {"addressing_style": "virtual"}
    assert client.meta.config.read_timeout == 7 and client.meta.config.connect_timeout == 5


@pytest.mark.parametrize(
    ("fields", "bucket", "says"),
    [
        ({"conn_type": "smtp", "host": "h"}, "b", "type 'smtp', which is not an S3"),
        ({"conn_type": "generic"}, "b", "--conn-type aws"),
        (_s3(), "", "no bucket given"),
        (_s3(role_arn="arn:aws:iam::1:role/x"), "b", "assume role"),
    ],
)
def test_a_wrong_s3_connection_says_what_is_wrong(conn, fields, bucket, says):
    cid = conn("bad", **fields)
    with pytest.raises(ConnectionProblem) as err:
        c.s3_location(cid, bucket=bucket)
    assert says in str(err.value)


def test_the_command_line_reaches_s3_through_the_same_builder(monkeypatch):
    for key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:7")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-northwest-1")
    location = c.s3_location_from_env("s3://bucket/some/prefix")
    assert (location.bucket, location.prefix, location.region) == ("bucket", "some/prefix", "cn-northwest-1")
    client = location.client()
    assert client.meta.endpoint_url == "http://127.0.0.1:7"
    assert client.meta.config.s3 == {"addressing_style": "path"} and client.meta.config.connect_timeout == 5


def test_smtp_goes_through_the_providers_hook(conn):
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    hook = c.smtp_hook(conn("mail", conn_type="smtp", host="127.0.0.1", port=25))
    assert isinstance(hook, SmtpHook)
    with pytest.raises(ConnectionProblem, match="names no host"):
        c.smtp_hook(conn("nohost", conn_type="smtp"))
    with pytest.raises(ConnectionProblem, match="type 'aws', which is not an SMTP connection"):
        c.smtp_hook(conn("s3", **_s3()))


def test_the_command_line_starts_without_airflow():
    code = (
        "import sys, dereg.cli, dereg.connections, dereg.classify.scan, dereg.backup.archive, "
        "dereg.backup.restore, dereg.keys_kms, dereg.inventory.draft, dereg.inventory.links, "
        "dereg.classify.engine; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
