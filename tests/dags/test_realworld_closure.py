"""The closure of two real databases Dereg did not design (../shared/realworld/: pagila on
PostgreSQL, mall on MariaDB), run for real with `dag.test()`, the source connection added the
ordinary way (`airflow connections add --conn-type postgres|mysql`, as the UI form does), the
manifest of tests/data/realworld/, and checked independently of Dereg's own reports, against each
pack's truth.json:

- every canary value is gone from every text column of every table;
- every table truth.json says may go (`customer_tables` expected `delete`) is empty;
- every kept table (`keep`) has its rows; kept accounting records keep their amounts (`sums`) and
  their kept columns, while their personal columns hold tokens (or nothing);
- rows that must stay but lose their personal data (`expected: pseudonymize`) are all there with
  tokens in their personal columns;
- business tables (`untouched`) are byte-for-byte what they were;
- the certificate verifies, and names the store without credentials.

This replaces the demo school's typed-connection closures: the same path (typed connection,
PostgreSQL and MariaDB), on real schemas.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from dereg.keys import Keyring, public_key_pem
from tests.conftest import MARIADB_ADMIN_URL, PG_ADMIN_URL
from tests.dags.harness import ROOT, AirflowSandbox, store_connections
from tests.integration.realworld.conftest import _load, _pack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MANIFESTS = ROOT / "tests" / "data" / "realworld"
KINDS = {"pagila": ("postgres", "postgresql", 5432), "mall": ("mysql", "mysql", 3306)}


def _fresh_url(pack: str) -> sa.URL:
    """Where `_load_fresh` loads the pack: a new database (the session fixtures' copies are read by
    other tests and must not be erased)."""
    admin = PG_ADMIN_URL if pack == "pagila" else MARIADB_ADMIN_URL
    return sa.make_url(admin).set(database=f"closure_{pack}_{uuid.uuid4().hex[:8]}")


def _load_fresh(pack: str, url: sa.URL) -> dict:
    """The pack loaded by its own load.sh into the new database `url`; its truth.json."""
    here = _pack(pack)
    if pack == "pagila":
        _load(
            here / "load.sh",
            url.database,
            {"PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432)},
        )
    else:
        env = {
            "PYTHON": sys.executable,
            "MYSQL_HOST": url.host or "127.0.0.1",
            "MYSQL_TCP_PORT": str(url.port or 3306),
        }
        _load(here / "load.sh", url.database, env)
    return json.loads((here / "truth.json").read_text(encoding="utf-8"))


def _drop(url: sa.URL) -> None:
    if url.get_backend_name() == "postgresql":
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        statement = f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'
    else:
        admin = sa.create_engine(MARIADB_ADMIN_URL)
        statement = f"DROP DATABASE IF EXISTS `{url.database}`"
    with admin.connect() as conn:
        conn.exec_driver_sql(statement)
    admin.dispose()


def _tables(conn) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    metadata.reflect(conn, views=False)
    return dict(metadata.tables)


def _digest(conn, table: sa.Table, columns: list[str] | None = None) -> str:
    """sha256 of the table's rows (or of `columns`), in a stable order, as text."""
    cols = [table.c[c] for c in columns] if columns else list(table.c)
    order = list(table.primary_key.columns) or cols
    digest = hashlib.sha256()
    for row in conn.execute(sa.select(*cols).order_by(*order)):
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def _text_columns(table: sa.Table) -> list[sa.Column]:
    return [
        c for c in table.c if isinstance(c.type, (sa.String, sa.Text)) and not isinstance(c.type, sa.Enum)
    ]


def _canaries_left(conn, tables: dict[str, sa.Table], canaries: dict[str, list[str]]) -> dict[str, int]:
    """kind -> how many (table, value) pairs still hold a canary value (values are never shown)."""
    left: dict[str, int] = {}
    for name, table in tables.items():
        columns = _text_columns(table)
        if not columns:
            continue
        for kind, values in canaries.items():
            for value in values:
                hit = sa.or_(*[c.contains(value, autoescape=True) for c in columns])
                if conn.execute(sa.select(sa.func.count()).select_from(table).where(hit)).scalar_one():
                    left[f"{kind} in {name}"] = left.get(f"{kind} in {name}", 0) + 1
    return left


def _tokens_only(conn, table: sa.Table, columns: list[str]) -> dict[str, int]:
    """column -> rows whose value is neither NULL, empty, nor a token."""
    bad = {}
    for c in columns:
        col = table.c[c]
        cond = sa.and_(
            col.is_not(None),
            sa.cast(col, sa.String) != "",
            sa.not_(sa.cast(col, sa.String).startswith("tok_")),
        )
        n = conn.execute(sa.select(sa.func.count()).select_from(table).where(cond)).scalar_one()
        if n:
            bad[c] = n
    return bad


def _add_connection(sandbox: AirflowSandbox, conn_id: str, conn_type: str, url: sa.URL) -> None:
    airflow = str(Path(sys.executable).parent / "airflow")
    args = [airflow, "connections", "add", conn_id, "--conn-type", conn_type, "--conn-host", "127.0.0.1"]
    args += ["--conn-port", str(url.port or KINDS_PORT[conn_type]), "--conn-login", url.username or "root"]
    args += ["--conn-schema", url.database]
    added = subprocess.run(args, env=sandbox.env, capture_output=True, text=True, timeout=300)
    assert added.returncode == 0, added.stdout[-2000:] + added.stderr[-2000:]


KINDS_PORT = {"postgres": 5432, "mysql": 3306}


@pytest.mark.parametrize("pack", sorted(KINDS))
def test_a_real_database_is_closed_correctly(pack, tmp_path, seaweed, smtp_sink, monkeypatch):
    from dereg.cli import main as dereg_cli

    conn_type, backend, port = KINDS[pack]
    url = _fresh_url(pack)
    engine = sa.create_engine(url, hide_parameters=True)  # a failing check never prints a canary
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        # the pack loads (a process of its own) while the Airflow home is made and the connection added
        loading = pool.submit(_load_fresh, pack, url)
        manifest = yaml.safe_load((MANIFESTS / f"{pack}.yaml").read_text(encoding="utf-8"))
        prefix = f"{manifest['backup']['prefix']}/{tmp_path.name}"
        manifest["backup"]["prefix"] = prefix
        companies = tmp_path / "companies"
        companies.mkdir()
        (companies / f"{pack}.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True))
        keyring_path = tmp_path / "keyring.json"
        Keyring.create(keyring_path)
        store_url = f"sqlite:///{tmp_path / 'compliance.db'}"
        env = {
            "DEREG_STATE_DIR": str(tmp_path / "state"),
            "DEREG_STORE_URL": store_url,
            "DEREG_KEYRING": str(keyring_path),
            "DEREG_OUTPUT_DIR": str(tmp_path / "output"),
            "DEREG_COMPANIES_DIR": str(companies),
            **store_connections(seaweed, smtp_sink),
        }
        sandbox = AirflowSandbox(tmp_path / "airflow", env=env)
        source = manifest["sources"][0]
        _add_connection(sandbox, source["conn_id"], conn_type, url)
        truth = loading.result()

        with engine.connect() as conn:
            tables = _tables(conn)
            untouched = {t: _digest(conn, tables[t]) for t in truth["untouched"] if t in tables}
            kept_columns = {t: _digest(conn, tables[t], r["keep"]) for t, r in truth["retain"].items()}
            if pack == "pagila":
                spare = tables["address"]
                spare_rows = truth["untouched_rows"]["address"]["address_id"]
                spare_before = _digest_where(conn, spare, spare.c.address_id.in_(spare_rows))

        dag_id = f"closure__{manifest['company_id']}"
        started = time.monotonic()
        proc = sandbox.start_dag_test(
            dag_id, {"dry_run": False, "reason": "test: real closure", "notice_window_days": 0}
        )
        answer = sandbox.answer(dag_id, user="approver")
        result, log = sandbox.finish(proc, timeout=900)
        elapsed = time.monotonic() - started
        assert answer["status"] == 200, (answer, log[-6000:])
        assert result["state"] == "success", (result, log[-8000:])

        with engine.connect() as conn:
            tables = _tables(conn)
            counts = {
                t: conn.execute(sa.select(sa.func.count()).select_from(tables[t])).scalar_one()
                for t in tables
            }
            # every canary gone from every text column of every table
            assert _canaries_left(conn, tables, truth["canary"]) == {}
            # the customers' tables that may go are empty
            gone = [t for t, c in truth["customer_tables"].items() if c["expected"] == "delete"]
            assert {t: counts[t] for t in gone} == dict.fromkeys(gone, 0)
            # kept and untouched tables have their rows
            assert {t: counts[t] for t in truth["keep"]} == truth["keep"]
            # kept records: amounts and kept columns as they were, personal columns tokens only
            for t, rule in truth["retain"].items():
                table = tables[t]
                for column, total in rule["sums"].items():
                    got = conn.execute(sa.select(sa.func.sum(table.c[column]))).scalar_one()
                    assert f"{got:.2f}" == total, (t, column)
                assert _digest(conn, table, rule["keep"]) == kept_columns[t], t
                assert _tokens_only(conn, table, rule["pseudonymize"]) == {}, t
            # rows that stay without their personal data
            for t, c in truth["customer_tables"].items():
                if c["expected"] == "pseudonymize":
                    assert counts[t] == truth["rows"][t], t  # every row stays
                    personal = [k for k in truth["truth"].get(t, {}) if not truth["truth"][t][k].get("empty")]
                    if t == "address":  # the 4 rows no customer uses are not theirs
                        where = tables[t].c.address_id.not_in(spare_rows)
                        assert _tokens_only_where(conn, tables[t], personal, where) == {}, t
                    else:
                        assert _tokens_only(conn, tables[t], personal) == {}, t
            # business tables exactly as they were
            assert {t: _digest(conn, tables[t]) for t in untouched} == untouched
            if pack == "pagila":
                assert _digest_where(conn, spare, spare.c.address_id.in_(spare_rows)) == spare_before

        # the certificate verifies against the key and the ledger, and names the store plainly
        certs = list((tmp_path / "output").rglob("certificate.json"))
        assert len(certs) == 1
        body = json.loads(certs[0].read_text())["body"]
        store = next(s for s in body["stores"] if s["source_id"] == source["id"])
        summary = store["plan"]
        # the figures the closing note quotes (counts only)
        print(
            f"{pack}: {len(tables)} tables, {len(store['inferred_links'])} inferred links relied on, rows deleted "
            f"{summary.get('rows_to_delete')}, pseudonymized {summary.get('rows_to_pseudonymize')}, tables "
            f"per action {summary.get('counts')}, canaries left 0, closure {elapsed:.1f} s"
        )
        assert store["store"] == {
            "conn_id": source["conn_id"],
            "type": conn_type,
            "location": f"{backend}://127.0.0.1:{port}/{url.database}",
        }
        pem = tmp_path / "signing.pem"
        pem.write_text(public_key_pem(Keyring.load(keyring_path).public_key()))
        assert (
            dereg_cli(["verify-certificate", str(certs[0]), "--store", store_url, "--public-key", str(pem)])
            == 0
        )
        # per-subject keys (format 5): the PostgreSQL backup sealed the subjects' rows as the plan links
        # them; another database's backup says in its manifest why it has none
        import boto3

        from dereg.backup import catalog
        from dereg.evidence.store import open_store

        s3 = boto3.client(
            "s3",
            endpoint_url=seaweed.endpoint_url,
            aws_access_key_id=seaweed.access_key,
            aws_secret_access_key=seaweed.secret_key,
            region_name="cn-north-1",
        )
        taken = [b for b in catalog.list_backups(open_store(store_url)) if b["source_id"] == source["id"]]
        backup_manifest = json.loads(
            s3.get_object(Bucket=taken[0]["bucket"], Key=taken[0]["manifest_key"])["Body"].read()
        )
        keys = backup_manifest["subject_keys"]
        assert keys["enabled"] is (backend == "postgresql"), keys
        if keys["enabled"]:
            sealed = {n for n, t in backup_manifest["tables"].items() if t.get("sealed")}
            subject = source["subject_table"].rsplit(".", 1)[-1]
            assert subject in {n.rsplit(".", 1)[-1] for n in sealed} and len(sealed) > 1, sealed
    finally:
        pool.shutdown()  # a load still running ends before its database is dropped
        engine.dispose()
        _drop(url)


def _digest_where(conn, table: sa.Table, where) -> str:
    digest = hashlib.sha256()
    for row in conn.execute(sa.select(table).where(where).order_by(*table.primary_key.columns)):
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def _tokens_only_where(conn, table: sa.Table, columns: list[str], where) -> dict[str, int]:
    bad = {}
    for c in columns:
        col = table.c[c]
        text = sa.cast(col, sa.String)
        cond = sa.and_(where, col.is_not(None), text != "", sa.not_(text.startswith("tok_")))
        n = conn.execute(sa.select(sa.func.count()).select_from(table).where(cond)).scalar_one()
        if n:
            bad[c] = n
    return bad
