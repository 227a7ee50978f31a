"""The demo closure on PostgreSQL and on MariaDB, with the source connection added the ordinary way
(`airflow connections add --conn-type postgres|mysql ...`, as the UI form does): the providers keep
its type, the closure runs end to end, and the certificate names the store without credentials."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dags.test_closure_run import DAG_ID, PERSON_TABLES, _conf, closure  # noqa: F401 - fixture

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TYPES = {"pg_url": ("postgres", "postgresql", 5432), "mariadb_url": ("mysql", "mysql", 3306)}


@pytest.mark.parametrize("server", sorted(TYPES))
def test_a_connection_added_with_its_type_closes_the_school_and_is_certified(closure, server, request):  # noqa: F811
    from devtools.demo.seed import seed

    conn_type, backend, port = TYPES[server]
    url = sa.make_url(request.getfixturevalue(server))
    seed(url.render_as_string(hide_password=False), students=30)
    del closure.env["AIRFLOW_CONN_DEMO_ACADEMY_DB"]  # an environment variable would win over the store
    sandbox = closure.sandbox()
    airflow = str(Path(sys.executable).parent / "airflow")
    added = subprocess.run(
        [
            airflow,
            "connections",
            "add",
            "demo_academy_db",
            "--conn-type",
            conn_type,
            "--conn-host",
            "127.0.0.1",
            "--conn-port",
            str(port),
            "--conn-login",
            url.username,
            "--conn-schema",
            url.database,
        ],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-2000:]
    stored = subprocess.run(
        [airflow, "connections", "get", "demo_academy_db", "-o", "json"],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(stored.stdout)[0]["conn_type"] == conn_type  # not "generic"

    proc = sandbox.start_dag_test(DAG_ID, _conf())
    answer = sandbox.answer(DAG_ID, user="approver")
    result, log = sandbox.finish(proc)
    assert answer["status"] == 200, answer
    assert result["state"] == "success", (result, log[-6000:])

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            left = {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in PERSON_TABLES}
            kept = conn.execute(sa.text("SELECT COUNT(*) FROM accounting_records")).scalar_one()
    finally:
        engine.dispose()
    assert left == dict.fromkeys(PERSON_TABLES, 0) and kept > 0

    certs = list((closure.tmp / "output").rglob("certificate.json"))
    assert len(certs) == 1
    body = json.loads(certs[0].read_text())["body"]
    store = next(s for s in body["stores"] if s["source_id"] == "school_db")
    assert store["store"] == {
        "conn_id": "demo_academy_db",
        "type": conn_type,
        "location": f"{backend}://127.0.0.1:{port}/{url.database}",
    }
