"""Preflight's checks, without Airflow: the connection builders are given as arguments (real SQLite
databases for sources; stand-ins for S3 and SMTP, whose real servers the closure tests use)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from botocore.exceptions import EndpointConnectionError

from dereg.connections import ConnectionProblem
from dereg.connectors import Connectors
from dereg.errors import KeyringError, NotifyError
from dereg.manifest import load_manifest
from dereg.preflight import PreflightFailed, preflight_problems

DEMO = Path(__file__).resolve().parents[2] / "include" / "companies" / "demo-academy.yaml"
REASON = "test: the school closes"


class FakeHook:
    def __init__(self, error: Exception | None = None):
        self.error, self.opened, self.closed = error, False, False

    def open(self):
        if self.error:
            raise self.error
        self.opened = True
        return self

    def close(self):
        self.closed = True


class FakeLocation:
    endpoint_url = "http://127.0.0.1:1"

    def __init__(self, error: Exception | None = None):
        self.error = error

    def client(self):
        location = self

        class Client:
            def list_buckets(self):
                if location.error:
                    raise location.error
                return {"Buckets": []}

        return Client()


@pytest.fixture
def school(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'school.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE students (id INTEGER PRIMARY KEY, guardian_id INTEGER)")
        conn.exec_driver_sql("CREATE TABLE guardians (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
        conn.exec_driver_sql("CREATE TABLE accounting_records (id INTEGER PRIMARY KEY)")
    engine.dispose()
    return url


def _connectors(school: str, **overrides) -> Connectors:
    hook = FakeHook()
    defaults = {
        "exists": lambda conn_id: True,
        "engine": lambda conn_id: sa.create_engine(school),
        "backup_location": lambda conn_id, spec: FakeLocation(),
        "object_client": lambda source: object(),
        "smtp_hook": lambda conn_id: hook,
        "database_url": lambda conn_id: sa.make_url(school),
    }
    return Connectors(**{**defaults, **overrides})


def _problems(
    school, manifest=None, reason=REASON, keyring_error=None, dry_run=False, **overrides
) -> list[str]:
    def load():
        if keyring_error:
            raise keyring_error

    return preflight_problems(
        manifest or load_manifest(DEMO),
        reason,
        connectors=_connectors(school, **overrides),
        load_keyring=load,
        dry_run=dry_run,
    )


def test_a_ready_closure_has_no_problems_and_the_smtp_session_is_closed(school):
    hook = FakeHook()
    assert _problems(school, smtp_hook=lambda conn_id: hook) == []
    assert hook.opened and hook.closed


def test_every_problem_is_reported_at_once(school):
    problems = _problems(
        school,
        reason="x",
        keyring_error=KeyringError("keyring /k does not exist"),
        exists=lambda conn_id: conn_id != "dereg_smtp",
        backup_location=lambda conn_id, spec: FakeLocation(EndpointConnectionError(endpoint_url="http://s3")),
    )
    assert [p.split(":")[0] for p in problems] == [
        "notify.smtp_conn_id",
        "params.reason",
        "keyring",
        "backup.conn_id",
    ]
    assert "no such connection 'dereg_smtp'" in problems[0]
    assert "unreachable or refuses the credentials (EndpointConnectionError)" in problems[3]
    with pytest.raises(PreflightFailed) as err:
        raise PreflightFailed("demo_academy", problems)
    assert str(err.value).startswith(
        "preflight of company demo_academy found 4 problem(s); nothing was done:"
    )


def test_a_misconfigured_database_connection_is_not_called_unreachable(school):
    def engine(conn_id):
        raise ConnectionProblem(
            f"connection {conn_id!r} (postgres) names no host: set its Host (--conn-host)"
        )

    problems = _problems(school, engine=engine)
    assert problems == [
        "sources[0].conn_id: connection 'demo_academy_db' (postgres) names no host: set its Host (--conn-host)"
    ]


def test_a_database_that_does_not_answer_is_unreachable(school, tmp_path):
    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    problems = _problems(school, engine=lambda conn_id: sa.create_engine(missing))
    assert len(problems) == 1
    assert problems[0].startswith(
        "sources[0] (school_db): database of connection 'demo_academy_db' is unreachable"
    )


def test_missing_tables_are_named_with_their_manifest_paths(school, tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    problems = _problems(school, engine=lambda conn_id: sa.create_engine(empty))
    assert problems == [
        "sources[0].subject_table: table 'students' does not exist in school_db",
        "sources[0].notify.table: table or view 'guardians' does not exist in school_db",
        "sources[0].retain[0].table: table 'accounting_records' does not exist in school_db",
    ]


def test_wrong_s3_smtp_object_and_successor_connections_say_what_is_wrong(school):
    from dereg.manifest import ObjectSourceSpec
    from dereg.manifest.models import Successor

    manifest = load_manifest(DEMO).model_copy(
        update={
            "object_sources": [ObjectSourceSpec("uploads", "files", "crm-uploads", "u")],
            "successor": Successor(name="Successor School", conn_id="successor_db"),
        }
    )

    def wrong(what):
        def build(*args, **kwargs):
            raise ConnectionProblem(f"{what} is wrong")

        return build

    problems = _problems(
        school,
        manifest,
        backup_location=wrong("s3"),
        object_client=wrong("files"),
        smtp_hook=wrong("smtp"),
        database_url=wrong("successor"),
    )
    assert problems == [
        "object_sources[0].conn_id: files is wrong",
        "backup.conn_id: s3 is wrong",
        "notify.smtp_conn_id: smtp is wrong",
        "successor.conn_id: successor is wrong",
    ]


def test_an_smtp_relay_that_refuses_is_reported_and_the_hook_closed(school):
    hook = FakeHook(
        NotifyError("SMTP server 127.0.0.1:1 of connection 'dereg_smtp' cannot be used: unreachable")
    )
    problems = _problems(school, smtp_hook=lambda conn_id: hook)
    assert problems == [
        "notify.smtp_conn_id: SMTP server 127.0.0.1:1 of connection 'dereg_smtp' cannot be used: unreachable"
    ]
    assert hook.closed


def _with_notify(notify):
    from dereg.manifest import parse_manifest

    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    if notify is None:
        del data["sources"][0]["notify"]
    else:
        data["sources"][0]["notify"] = notify
    return parse_manifest(data, str(DEMO))


def test_a_real_run_that_cannot_reach_the_customers_is_refused_a_dry_run_is_not(school):
    manifest = _with_notify(None)
    problems = _problems(school, manifest)
    assert len(problems) == 1
    assert problems[0].startswith("sources[0].notify: is missing, so no customer of school_db would be told")
    assert "none: true with a reason" in problems[0] and "subject_column" in problems[0]
    assert _problems(school, manifest, dry_run=True) == []
    none = _with_notify({"none": True, "reason": "walk-in visitors leave no address"})
    assert _problems(school, none) == []


def test_notify_columns_are_checked_and_a_view_is_a_notify_table(school):
    engine = sa.create_engine(school)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE VIEW guardian_contacts AS SELECT id, name, email FROM guardians")
    engine.dispose()
    view = {
        "table": "guardian_contacts",
        "link_column": "guardian_id",
        "key_column": "id",
        "email_column": "email",
        "name_column": "name",
    }
    assert _problems(school, _with_notify(view)) == []
    own = {"email_column": "mail", "name_column": "name"}
    assert _problems(school, _with_notify(own)) == [
        "sources[0].notify.email_column: students has no column 'mail'; name one of its columns: guardian_id, id",
        "sources[0].notify.name_column: students has no column 'name'; name one of its columns: guardian_id, id",
    ]
    profile = {
        "table": "guardians",
        "subject_column": "student",
        "email_column": "email",
        "name_column": "name",
    }
    assert _problems(school, _with_notify(profile)) == [
        "sources[0].notify.subject_column: guardians has no column 'student'; name one of its columns: "
        "email, id, name"
    ]
