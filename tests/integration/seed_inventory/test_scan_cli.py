"""`dereg scan` against real servers: the seeded school on PostgreSQL and MariaDB, an S3 prefix on
SeaweedFS, a table the user may not read, and a server that goes away halfway through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from dereg.classify.scan import scan_url
from devtools.demo.seed import planted_values, seed

pytestmark = pytest.mark.integration

CLOSURE = date(2026, 12, 31)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dereg.cli", "scan", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _columns(report: dict) -> dict[tuple[str, str], dict]:
    return {(c["table"], c["column"]): c for c in report["columns"]}


@pytest.mark.parametrize("server", ["pg_url", "mariadb_url"])
def test_scan_cli_reports_every_column_of_the_school(server, request, tmp_path):
    url = request.getfixturevalue(server)
    seed(url, students=120)
    planted = planted_values(url)
    out = tmp_path / "report.json"
    page = tmp_path / "report.html"
    done = _cli(
        url,
        "--json",
        str(out),
        "--html",
        str(page),
        "--subject-table",
        "students",
        "--closure-date",
        "2026-12-31",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        columns = {
            (t, c["name"])
            for t in sa.inspect(conn).get_table_names()
            for c in sa.inspect(conn).get_columns(t)
        }
    engine.dispose()
    found = _columns(report)
    assert set(found) == columns  # every column, personal or not
    assert found[("courses", "title")]["categories"] == [] and found[("courses", "title")]["level"] is None
    assert found[("students", "id_number")]["categories"] == ["cn_resident_id"]
    assert found[("students", "id_number")]["level"] == "sensitive"
    assert found[("guardians", "mobile")]["categories"] == ["cn_mobile"]
    assert found[("contracts", "payer_bank_card")]["categories"] == ["bank_card"]
    assert {"cn_mobile", "cn_resident_id"} <= set(found[("notes", "body")]["categories"])
    assert 0 < report["minors"] <= report["subjects"] == 120
    assert found[("students", "name")]["level"] == "sensitive"  # children's data is sensitive
    for c in report["columns"]:
        assert set(c) >= {"table", "column", "categories", "level", "match_ratio", "values_checked", "reason"}
    # never a raw value, in the reports or on the terminal
    text = out.read_text(encoding="utf-8") + page.read_text(encoding="utf-8") + done.stdout + done.stderr
    leaked = [v for values in planted.values() for v in values if v in text]
    assert leaked == []
    assert "<table>" in page.read_text(encoding="utf-8")


def test_full_scan_on_postgresql_counts_every_value(pg_url):
    seed(pg_url, students=80)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT count(id_number) FROM students")).scalar_one()
        mobiles = conn.execute(sa.text("SELECT count(mobile) FROM guardians")).scalar_one()
        # a value with a tab, a newline and a backslash before an ID number: COPY escapes them
        conn.execute(sa.text("UPDATE notes SET body = :b WHERE id = 1"), {"b": "a\tb\\n\n110105194912310021"})
        conn.commit()
    engine.dispose()
    report = scan_url(pg_url, full=True, subject_table="students", closure_date=CLOSURE)
    found = _columns(report)
    assert report["mode"] == "full"
    assert (
        found[("students", "id_number")]["matches"]
        == ids
        == found[("students", "id_number")]["values_checked"]
    )
    assert found[("guardians", "mobile")]["matches"] == mobiles
    assert found[("attendance", "lesson_date")]["categories"] == []


def test_unreadable_table_is_reported_and_the_rest_scanned(pg_url):
    seed(pg_url, students=30)
    role = f"dereg_reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
        conn.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.exec_driver_sql(f"REVOKE SELECT ON notes FROM {role}")
    try:
        url = sa.make_url(pg_url).set(username=role).render_as_string(hide_password=False)
        report = scan_url(url, subject_table="students", closure_date=CLOSURE)
        assert [p["table"] for p in report["problems"]] == ["notes"]
        assert "permission denied" in report["problems"][0]["reason"].lower()
        assert ("students", "id_number") in _columns(report)
        done = _cli(url)
        assert done.returncode == 1 and "PROBLEM notes" in done.stdout
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        admin.dispose()


def test_a_server_that_goes_away_mid_scan_is_reported_per_table(pg_url):
    seed(pg_url, students=30)
    database = sa.make_url(pg_url).database
    admin = sa.create_engine(sa.make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    lines: list[str] = []

    def cut_off(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:  # after the first table: nobody may connect, and the open sessions end
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
                conn.exec_driver_sql(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
                )

    try:
        report = scan_url(pg_url, subject_table="students", closure_date=CLOSURE, progress=cut_off)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        admin.dispose()
    scanned = {c["table"] for c in report["columns"]}
    failed = {p["table"] for p in report["problems"]}
    assert scanned == {"accounting_records"}  # the first table, read before the cut
    assert {"students", "guardians", "notes"} <= failed
    assert all("cannot be read" in p["reason"] or "minors" in p["reason"] for p in report["problems"])


def test_scan_of_an_s3_prefix(seaweed, s3_client, bucket_name, tmp_path):
    s3_client.create_bucket(Bucket=bucket_name)
    csv_text = "姓名,手机,备注\n张伟,13812345678,家住北京\n王芳,13987654321,无\n李娜,13711112222,\n"
    s3_client.put_object(
        Bucket=bucket_name, Key="crm/exports/2026/customers.csv", Body=csv_text.encode("gb18030")
    )
    s3_client.put_object(
        Bucket=bucket_name,
        Key="crm/feedback/1.json",
        Body=json.dumps(
            {"parent": {"name": "刘洋", "email": "liu.yang@example.cn"}}, ensure_ascii=False
        ).encode(),
    )
    s3_client.put_object(
        Bucket=bucket_name, Key="crm/photos/students/a.jpg", Body=b"\xff\xd8\xff" + b"0" * 100
    )
    s3_client.put_object(
        Bucket=bucket_name, Key="crm/catalog/course.png", Body=b"\x89PNG\r\n\x1a\n" + b"0" * 100
    )
    s3_client.put_object(Bucket=bucket_name, Key="crm/readme.txt", Body=b"course list, no people")
    out = tmp_path / "s3.json"
    done = _cli(
        f"s3://{bucket_name}/crm",
        "--json",
        str(out),
        env={
            "AWS_ENDPOINT_URL": seaweed.endpoint_url,
            "AWS_ACCESS_KEY_ID": seaweed.access_key,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        },
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    found = _columns(report)
    assert set(found[("exports/2026", "*.csv")]["categories"]) >= {"cn_mobile", "name"}
    assert set(found[("feedback", "*.json")]["categories"]) == {"email", "name"}
    assert found[("photos/students", "*.jpg")]["categories"] == ["biometric_face"]
    assert found[("catalog", "*.png")]["categories"] == []
    assert found[("(prefix root)", "*.txt")]["categories"] == []
    tables = {t["table"]: t for t in report["tables"]}
    assert tables["exports/2026/*.csv"]["objects"] == 1
    text = out.read_text(encoding="utf-8") + done.stdout
    assert "13812345678" not in text and "liu.yang@example.cn" not in text and "customers.csv" not in text
