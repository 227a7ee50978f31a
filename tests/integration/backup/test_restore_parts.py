"""A backup taken in parts is restored and verified in parts (the closure DAG's restore_backup,
mapped over the parts, then restore_verify): every part into one scratch schema of the scratch
PostgreSQL server, checked table by table; the finish checks the foreign keys across the parts
and always drops the schema. A part that does not verify fails, restore_verify refuses, and no
scratch data is left. Calls the functions (as the workers do), not a DAG run."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from dereg.backup import parts, restoreparts
from dereg.backup.sources import collect_restores, restore_units, restore_verify_backup
from dereg.errors import RestoreMismatch
from dereg.evidence.run_artifacts import RunArtifacts

pytestmark = pytest.mark.integration
RUN = "run-restore-parts"
log = logging.getLogger(__name__)


def _backup_in_parts(pg_url, location, keyring, store, object_lock=False):
    engine = sa.create_engine(pg_url)
    common = dict(store=store, location=location, keyring=keyring)
    prepared = parts.prepare_backup(
        engine,
        company_id="school-1",
        run_id=RUN,
        source_id="db",
        retention_days=1,
        object_lock=object_lock,
        rows_per_part=100,
        row_counts={"guardians": 2, "students": 2, "payments": 201},
        **common,
    )
    for index in range(len(prepared["parts"])):
        parts.backup_part(engine, prepared["backup_id"], index, **common)
    engine.dispose()
    return parts.finish_backup(prepared["backup_id"], **common)


def _scratch_schemas(pg_url) -> set[str]:
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        found = conn.exec_driver_sql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dereg\\_scratch\\_%%'"
        ).scalars()
        names = set(found)
    engine.dispose()
    return names


def _setup(pg_url, record, store):
    manifest = SimpleNamespace(company_id="school-1", sources=[SimpleNamespace(id="db", conn_id="db_conn")])
    artifacts = RunArtifacts(store, "school-1", RUN)
    backups = {"db": {"backup_id": record.backup_id, "parts": len(record.parts)}}
    artifacts.put_backups(backups)
    units = restore_units(backups, {"db": record.parts})
    return manifest, artifacts, units


def _restore(manifest, artifacts, unit, pg_url, location, keyring):
    return restore_verify_backup(
        manifest,
        artifacts,
        unit,
        location=location,
        keyring=keyring,
        scratch_url=lambda conn_id: pg_url if conn_id == "db_conn" else None,
        log=log,
        progress=None,
    )


def test_a_backup_in_parts_restores_part_by_part_into_one_scratch_schema_and_leaves_none(
    pg_url, make_source, location, keyring, store
):
    planted = make_source(pg_url)
    record = _backup_in_parts(pg_url, location, keyring, store)
    assert record.parts == [["payments"], ["guardians", "students"]]
    manifest, artifacts, units = _setup(pg_url, record, store)
    assert [u["label"] for u in units] == [
        f"db {record.backup_id} part 1/2",
        f"db {record.backup_id} part 2/2",
    ]
    assert not any(v in str(units) for v in planted)  # names, ids and part numbers only
    before = _scratch_schemas(pg_url)

    # both parts at once, as two workers would: the shared schema is created once
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda u: _restore(manifest, artifacts, u, pg_url, location, keyring), units))
    assert [(d["part"], d["tables"], d["rows"], d["ok"]) for d in done] == [
        (0, 1, 201, True),
        (1, 2, 4, True),
    ]
    schema = restoreparts.scratch_schema_name(record.backup_id, RUN)
    assert _scratch_schemas(pg_url) - before == {schema}
    assert restoreparts.tables_present(pg_url, schema, ["guardians", "students", "payments"]) == {
        "guardians",
        "students",
        "payments",
    }

    scratch = lambda conn_id: pg_url  # noqa: E731
    finished = collect_restores(
        manifest, artifacts, location=location, keyring=keyring, scratch_url=scratch, log=log
    )
    outcome = finished["restores"]["db"]
    assert outcome["ok"] and outcome["backup_id"] == record.backup_id
    assert (outcome["tables"], outcome["rows"], outcome["parts"]) == (3, 205, 2)
    assert outcome["foreign_keys_checked"] == 2  # students -> guardians, payments -> students
    assert artifacts.restore("db") == outcome  # as a whole restore records it: the gates read this
    assert _scratch_schemas(pg_url) == before  # nothing left behind

    # a retried part drops its own tables first; rows that do not fit together across the parts
    # (a guardian missing under its students) are found by the finish, which still drops the schema
    for unit in units:
        _restore(manifest, artifacts, unit, pg_url, location, keyring)
    _restore(manifest, artifacts, units[1], pg_url, location, keyring)
    engine = sa.create_engine(pg_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DELETE FROM "{schema}".guardians WHERE id = 1')
    engine.dispose()
    with pytest.raises(
        RestoreMismatch, match=r"students: 1 row\(s\) refer through \(guardian_id\) to no row"
    ):
        collect_restores(
            manifest, artifacts, location=location, keyring=keyring, scratch_url=scratch, log=log
        )
    assert artifacts.restore("db")["ok"] is False
    assert _scratch_schemas(pg_url) == before


def test_a_tampered_chunk_fails_its_part_and_restore_verify_refuses_leaving_no_scratch(
    pg_url, make_source, location, keyring, store, s3_client, bucket_name
):
    make_source(pg_url)
    record = _backup_in_parts(pg_url, location, keyring, store)
    manifest, artifacts, units = _setup(pg_url, record, store)
    # a chunk of `payments` (part 1) replaced by a chunk of `guardians` (part 2)
    stored = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    chunks = {name: spec["chunks"] for name, spec in stored["tables"].items()}
    body = s3_client.get_object(Bucket=bucket_name, Key=chunks["guardians"][0])["Body"].read()
    s3_client.put_object(Bucket=bucket_name, Key=chunks["payments"][0], Body=body)
    before = _scratch_schemas(pg_url)

    with pytest.raises(
        RestoreMismatch, match=r"(?s)\(part 1/2\) does not restore.*payments: chunk 0 .* fails authentication"
    ):
        _restore(manifest, artifacts, units[0], pg_url, location, keyring)
    assert _restore(manifest, artifacts, units[1], pg_url, location, keyring)["ok"]
    schema = restoreparts.scratch_schema_name(record.backup_id, RUN)
    # the failed part left none of its rows; the other part's wait for the finish
    assert restoreparts.tables_present(pg_url, schema, ["guardians", "students", "payments"]) == {
        "guardians",
        "students",
    }
    with pytest.raises(RestoreMismatch, match=r"part 1/2 did not restore to what was backed up"):
        collect_restores(
            manifest, artifacts, location=location, keyring=keyring, scratch_url=lambda c: pg_url, log=log
        )
    refused = artifacts.restore("db")
    assert (refused["backup_id"], refused["parts"], refused["ok"], refused["problems"]) == (
        record.backup_id,
        2,
        False,
        1,
    )
    assert _scratch_schemas(pg_url) == before
