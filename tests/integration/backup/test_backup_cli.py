"""`dereg backup` and `dereg restore` without Airflow, as an administrator runs them: real
PostgreSQL and MariaDB sources, SeaweedFS from the standard AWS environment variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dereg.keys import Keyring
from tests.integration.backup.conftest import make_small_source

pytestmark = pytest.mark.integration


def _dereg(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dereg.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture
def cli_env(seaweed, s3_client, bucket_name, tmp_path):
    s3_client.create_bucket(Bucket=bucket_name, ObjectLockEnabledForBucket=True)
    Keyring.create(tmp_path / "keyring.json")
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": seaweed.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "DEREG_KEYRING": str(tmp_path / "keyring.json"),
        "DEREG_STORE_URL": f"sqlite:///{tmp_path / 'compliance.db'}",
    }


@pytest.mark.parametrize("server", ["pg_url", "mariadb_url"])
def test_backup_then_restore_and_verify(server, request, cli_env, bucket_name, s3_client, tmp_path):
    url = request.getfixturevalue(server)
    planted = make_small_source(url)
    to = f"s3://{bucket_name}/cli"
    done = _dereg("backup", url, "--to", to, "--retention-days", "1", env=cli_env)
    assert done.returncode == 0, done.stderr[-2000:]
    backup_id = done.stdout.strip()
    assert backup_id and "\n" not in backup_id
    assert not [v for v in planted if v in done.stdout + done.stderr]

    # from the off-site store alone: a fresh compliance store knows nothing of the backup
    elsewhere = {**cli_env, "DEREG_STORE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restored = _dereg("restore", backup_id, "--from", to, "--into", target, "--verify", env=elsewhere)
    assert restored.returncode == 0, restored.stdout[-2000:] + restored.stderr[-2000:]
    assert "restored and verified" in restored.stdout
    assert (tmp_path / "restored.db").exists()
    # a PostgreSQL or MariaDB schema does not go into SQLite: the rows only, and it says so
    assert "restored data-only" in restored.stdout and "schema of the source rebuilt" not in restored.stdout

    # a flipped byte in a chunk: exit 1, naming the object and the chunk (MariaDB's small tables
    # share a pack, format 6: its chunk's key is in the manifest)
    manifest = json.loads(
        s3_client.get_object(Bucket=bucket_name, Key=f"cli/{backup_id}/manifest.json")["Body"].read()
    )
    key = manifest["tables"]["students"]["chunks"][0]
    assert key == f"cli/{backup_id}/data/students/000000.chunk" or "/packs/" in key
    blob = bytearray(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    blob[len(blob) // 2] ^= 0x01
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))
    broken = _dereg("restore", backup_id, "--from", to, "--verify", env=cli_env)
    assert broken.returncode == 1
    assert "MISMATCH" in broken.stdout and key in broken.stdout and "chunk 0" in broken.stdout

    # another keyring cannot open it: a clear error, exit 2
    Keyring.create(tmp_path / "other-keyring.json")
    wrong = _dereg(
        "restore",
        backup_id,
        "--from",
        to,
        "--verify",
        env={**cli_env, "DEREG_KEYRING": str(tmp_path / "other-keyring.json")},
    )
    assert wrong.returncode == 2 and "dereg: error:" in wrong.stderr and "key" in wrong.stderr.lower()
    assert not [v for v in planted if v in broken.stdout + wrong.stderr + restored.stdout]


def test_catalog_rebuild_from_the_off_site_store_alone(sqlite_url, cli_env, bucket_name, s3_client, tmp_path):
    make_small_source(sqlite_url)
    to = f"s3://{bucket_name}/rebuild"
    ids = []
    for _ in range(2):
        done = _dereg("backup", sqlite_url, "--to", to, "--retention-days", "1", env=cli_env)
        assert done.returncode == 0, done.stderr[-2000:]
        ids.append(done.stdout.strip())
    # the second backup is crypto-shredded: its escrowed key is destroyed
    s3_client.delete_object(Bucket=bucket_name, Key=f"rebuild/_escrow/{ids[1]}.json")

    lost = {**cli_env, "DEREG_STORE_URL": f"sqlite:///{tmp_path / 'new-store.db'}"}
    done = _dereg("catalog", "rebuild", "--from", to, env=lost)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 backups found, 2 added to the catalog (1 crypto-shredded), 0 already known" in done.stdout

    from dereg.backup import catalog
    from dereg.evidence.store import open_store

    store = open_store(lost["DEREG_STORE_URL"])
    assert [b["backup_id"] for b in catalog.list_backups(store)] == [ids[0]]
    assert catalog.get(store, ids[1])["status"] == "shredded"
    assert catalog.get(store, ids[0])["total_rows"] > 0
    store.dispose()
    again = _dereg("catalog", "rebuild", "--from", to, env=lost)
    assert "0 added to the catalog (0 crypto-shredded), 2 already known" in again.stdout
    restored = _dereg("restore", ids[0], "--from", to, "--verify", env=lost)
    assert restored.returncode == 0, restored.stdout[-2000:]


def test_crypto_shred_destroys_every_copy_of_the_key_once_retention_ends(
    sqlite_url, cli_env, bucket_name, s3_client, tmp_path, monkeypatch
):
    import datetime as dt

    from dereg.backup.catalog import crypto_shred
    from dereg.cli import _s3_location
    from dereg.evidence.store import open_store

    make_small_source(sqlite_url)
    to = f"s3://{bucket_name}/shred"
    backup_id = _dereg("backup", sqlite_url, "--to", to, "--retention-days", "1", env=cli_env).stdout.strip()
    escrow = f"shred/_escrow/{backup_id}.json"
    body = s3_client.get_object(Bucket=bucket_name, Key=escrow)["Body"].read()
    s3_client.put_object(Bucket=bucket_name, Key=escrow, Body=body)  # a second version of the escrow copy

    early = _dereg("shred", backup_id, "--from", to, "--yes", env=cli_env)
    assert (
        early.returncode == 2 and "retained until" in early.stderr and "Nothing was destroyed" in early.stderr
    )
    assert _dereg("restore", backup_id, "--from", to, "--verify", env=cli_env).returncode == 0
    assert _dereg("shred", backup_id, "--from", to, env=cli_env).returncode == 2  # no --yes

    store = open_store(cli_env["DEREG_STORE_URL"])
    os.environ.update(
        {k: cli_env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    )
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    result = crypto_shred(store, _s3_location(to), backup_id, now=later)
    store.dispose()
    assert result["escrow_versions_deleted"] == 2
    versions = s3_client.list_object_versions(Bucket=bucket_name, Prefix=escrow)
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    gone = _dereg("restore", backup_id, "--from", to, "--verify", env=cli_env)
    assert gone.returncode == 2 and "crypto-shredded" in gone.stderr


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_backup_killed_midway_is_abandoned_and_the_retry_completes_once(
    dialect, request, tmp_path, cli_env, bucket_name, s3_client
):
    """A worker killed during a backup leaves it `started` with locked chunks; the retry of the same
    run destroys that attempt's key and finishes one complete backup. PostgreSQL: the COPY path,
    which starts reading before the store is checked."""
    import signal
    import textwrap
    import time

    import sqlalchemy as sa

    from dereg.backup import catalog
    from dereg.evidence.store import open_store

    source_url = (
        f"sqlite:///{tmp_path / 'big.db'}" if dialect == "sqlite" else request.getfixturevalue("pg_url")
    )
    engine = sa.create_engine(source_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        if dialect == "postgresql":  # the same rows, made by the server
            conn.exec_driver_sql(
                "INSERT INTO notes SELECT g, repeat(lpad(g::text, 8, '0'), 40) FROM generate_series(0, 199999) g"
            )
        else:
            conn.execute(
                sa.text("INSERT INTO notes VALUES (:i, :b)"),
                [{"i": i, "b": f"{i:08d}" * 40} for i in range(200_000)],
            )
    engine.dispose()
    # the first run stops for good once two objects of the backup are stored (it then drops a marker
    # file) and is killed there: deterministic, whatever the machine's load; the retries run freely
    marker = tmp_path / "two-stored"
    backup = (
        "from dereg.evidence.store import open_store; from dereg.keys import Keyring;"
        f"create_backup(sa.create_engine({source_url!r}), company_id='c', run_id='r1', source_id='s',"
        f" location=_s3_location('s3://{bucket_name}/kill'), keyring=Keyring.load(), store=open_store(),"
        " retention_days=1, object_lock=True, progress=print)"
    )
    code = (
        "import sqlalchemy as sa; from dereg.backup.archive import create_backup; from dereg.cli import _s3_location;"
        + backup
    )
    # a second chunk stored: the marker is dropped and every later upload stalls until the kill
    stalled = (
        textwrap.dedent(
            f"""
        import pathlib, threading, time
        from dereg.backup import writer

        put, lock, stored = writer.Uploader.put, threading.Lock(), []

        def stalling(self, key, *args, **kwargs):
            with lock:
                if len(stored) >= 2:
                    time.sleep(3600)
            result = put(self, key, *args, **kwargs)
            if key.startswith("kill/bk-"):
                with lock:
                    stored.append(key)
                    if len(stored) == 2:
                        pathlib.Path({str(marker)!r}).touch()
            return result

        writer.Uploader.put = stalling
        """
        )
        + code
    )
    proc = subprocess.Popen([sys.executable, "-c", stalled], env=cli_env, stdout=subprocess.PIPE, text=True)
    store = open_store(cli_env["DEREG_STORE_URL"])
    deadline = time.time() + 120
    while time.time() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the backup never stored two objects"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    started = catalog.list_backups(store, status="started")
    assert len(started) == 1 and catalog.list_backups(store) == []

    retry = subprocess.run(
        [sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=300
    )
    assert retry.returncode == 0, retry.stderr[-2000:]
    assert "marked abandoned, key destroyed" in retry.stdout
    complete = catalog.list_backups(store)
    assert len(complete) == 1 and complete[0]["backup_id"] != started[0]["backup_id"]
    assert catalog.get(store, started[0]["backup_id"])["status"] == "abandoned"
    assert catalog.wrapped_key(store, started[0]["backup_id"]) is None
    escrow = f"kill/_escrow/{started[0]['backup_id']}.json"
    assert not s3_client.list_object_versions(Bucket=bucket_name, Prefix=escrow).get("Versions")
    again = subprocess.run(
        [sys.executable, "-c", code], env=cli_env, capture_output=True, text=True, timeout=300
    )
    assert "already complete; reusing it" in again.stdout and len(catalog.list_backups(store)) == 1
    store.dispose()
