"""The production topology of docker-compose.yaml, natively: api-server, scheduler, dag-processor,
triggerer and two Celery workers on this machine's PostgreSQL and Redis (`devtools.stack.distributed`).

The demo closure is triggered as `ops` and approved as `approver` through the REST API and must end
with a certificate that verifies, its tasks spread over both workers, and the workers holding no
rights on Airflow's metadata tables: what the tasks record goes to the compliance store's database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from devtools.stack.distributed import CELERY_TABLES, WORKERS
from devtools.stack.ports import free_port
from tests.e2e.stacks import FAST_AIRFLOW, kill_scratch_store

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "closure__demo_academy"
PG_ADMIN_URL = os.environ.get("DEREG_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DEREG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_run(length: int, stride: int = 1) -> int:
    """A port p such that p, p+stride, ... (length ports) are all free."""
    for _ in range(200):
        p = free_port()
        if p + stride * length > 65000:
            continue
        socks = []
        try:
            for i in range(length):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p + i * stride))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return p
    raise RuntimeError("no free port run")


def _s3_block() -> int:
    """SeaweedFS takes p..p+3 and their +10000 gRPC twins."""
    for _ in range(200):
        p = _free_run(4)
        if p + 10003 < 65000 and _free_run_at(p + 10000, 4):
            return p
    raise RuntimeError("no free port block for SeaweedFS")


def _free_run_at(start: int, length: int) -> bool:
    for q in range(start, start + length):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", q))
            except OSError:
                return False
    return True


def _require_services() -> None:
    import redis

    problems = []
    try:
        engine = sa.create_engine(PG_ADMIN_URL, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql("select 1")
    except Exception as exc:  # noqa: BLE001 - any failure means the server is not usable
        problems.append(f"PostgreSQL ({type(exc).__name__})")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Redis ({type(exc).__name__})")
    if problems:
        message = " and ".join(problems) + " not reachable"
        if os.environ.get("DEREG_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " and DEREG_REQUIRE_SERVICES=1", pytrace=False)
        pytest.skip(message)


@pytest.fixture
def dist_env(tmp_path):
    env = {
        **os.environ,
        "DEREG_STATE_DIR": str(tmp_path / "state"),
        "DEREG_PG_ADMIN_URL": PG_ADMIN_URL,
        "DEREG_REDIS_URL": REDIS_URL,
        "DEREG_AIRFLOW_PORT": str(free_port()),
        "DEREG_S3_PORT": str(_s3_block()),
        "DEREG_SMTP_PORT": str(free_port()),
        "DEREG_WORKER_LOG_PORT": str(free_port()),
        "DEREG_WORKER2_LOG_PORT": str(free_port()),
        "DEREG_TRIGGER_LOG_PORT": str(free_port()),
        "DEREG_SCHEDULER_HEALTH_PORT": str(free_port()),
        **FAST_AIRFLOW,
    }
    for k in (
        "DEREG_STORE_URL",
        "DEREG_KEYRING",
        "DEREG_OUTPUT_DIR",
        "AIRFLOW_HOME",
        "DEREG_DISTRIBUTED_ROOT",
    ):
        env.pop(k, None)
    yield env
    kill_scratch_store(Path(env["DEREG_STATE_DIR"]) / "distributed")
    subprocess.run(
        [sys.executable, "-m", "devtools.stack.distributed", "down"], env=env, cwd=ROOT, timeout=180
    )


def _cli(env, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devtools.stack.distributed", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _wait_for(client, run_id: str, predicate, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = client.task_states(DAG_ID, run_id)
        if predicate(states):
            return states
        if client.run_state(DAG_ID, run_id) == "failed":
            pytest.fail(f"run failed while waiting for {what}: {states}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}: {client.task_states(DAG_ID, run_id)}")


def _running_result_backend_users(info: dict) -> dict[str, str]:
    """The PostgreSQL user of each running worker's result backend (`celery inspect conf`)."""
    from celery import Celery

    app = Celery("test-inspect", broker=f"{REDIS_URL}/{info['redis_db']}")
    try:
        replies = app.control.inspect(destination=[f"celery@{w}" for w in WORKERS], timeout=5).conf() or {}
    finally:
        app.close()
    return {
        name: sa.make_url(conf["result_backend"].removeprefix("db+")).username
        for name, conf in replies.items()
    }


def test_demo_closure_on_the_distributed_topology(dist_env):
    from devtools.demo.seed import seed
    from devtools.stack.demo import DEMO_CONF
    from devtools.stack.rest import AirflowClient

    _require_services()
    # a part per table of at least one row: the demo school's backup is split over both workers
    dist_env["DEREG_BACKUP_PART_ROWS"] = "1"
    started = _cli(dist_env, "up", timeout=420)
    assert started.returncode == 0, started.stdout + started.stderr
    root = Path(dist_env["DEREG_STATE_DIR"]) / "distributed"
    info = json.loads((root / "distributed.json").read_text())
    # `status` right after `up`, in a process of its own beside the seeding and the trigger
    status = subprocess.Popen(
        [sys.executable, "-m", "devtools.stack.distributed", "status"],
        env=dist_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seed(f"sqlite:///{root / 'demo_academy.db'}", students=40)
        passwords = json.loads((root / "airflow" / "passwords.json").read_text())
        base = f"http://127.0.0.1:{dist_env['DEREG_AIRFLOW_PORT']}"
        ops = AirflowClient(base, "ops", passwords["ops"])
        ops.wait_for_dag(DAG_ID)
        run_id = ops.trigger(DAG_ID, DEMO_CONF)
        status_out, status_err = status.communicate(timeout=60)
    finally:
        if status.poll() is None:
            status.kill()
    assert status.returncode == 0, status_out + status_err
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", *WORKERS):
        assert f"{name}" in status_out
    _wait_for(ops, run_id, lambda s: s.get("approve") == "awaiting_input", "the approval", 300)
    AirflowClient(base, "approver", passwords["approver"]).answer_approval(DAG_ID, run_id)
    _wait_for(ops, run_id, lambda s: s.get("certificate") == "success", "the certificate", 300)
    deadline = time.monotonic() + 60
    while ops.run_state(DAG_ID, run_id) != "success" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ops.run_state(DAG_ID, run_id) == "success"

    # The certificate verifies, against the ledger in the compliance store's PostgreSQL database.
    cert = ops.xcom(DAG_ID, run_id, "certificate")
    verify = subprocess.run(
        [str(Path(sys.executable).parent / "dereg"), "verify-certificate", cert["certificate_path"]],
        env={**dist_env, "DEREG_STORE_URL": info["store_url"], "DEREG_KEYRING": str(root / "keyring.json")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "VALID" in verify.stdout and "cited ledger entries are in the ledger" in verify.stdout

    # Both Celery workers ran tasks of the run (each takes one task at a time), and the backup
    # written in parts is complete (the certificate cites it, restore_verify restored it).
    data = ops._call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 200})
    succeeded = [ti for ti in data["task_instances"] if ti["state"] == "success"]
    ran = {ti["task_id"]: ti["hostname"] for ti in succeeded}
    assert len(ran) >= 15
    assert {ti["hostname"] for ti in succeeded} == set(WORKERS), ran
    parts = [(ti["map_index"], ti["hostname"]) for ti in succeeded if ti["task_id"] == "backup_part"]
    assert len(parts) >= 2 and {host for _, host in parts} <= set(WORKERS), parts
    assert len(ops.xcom(DAG_ID, run_id, "backup_prepare")) == len(parts)
    assert ops.xcom(DAG_ID, run_id, "backup_prepare", key="summary")["parts"] == len(parts)
    # the backup taken in parts is restored and verified in parts; then restore_verify completed it
    # (approve and erase ran on its outcome). Each worker takes one task at a time, so which one
    # runs a phase's parts depends on what the other is doing (once, under load, all seven
    # restores ran on one): the parts of both phases ran on both workers, so parts written on one
    # were read on the other
    restores = [(ti["map_index"], ti["hostname"]) for ti in succeeded if ti["task_id"] == "restore_backup"]
    assert len(restores) >= 2 and {host for _, host in restores} <= set(WORKERS), restores
    assert {host for _, host in parts + restores} == set(WORKERS), (parts, restores)
    assert ops.xcom(DAG_ID, run_id, "backup", key="summary")["restore_units"] == len(restores)
    assert " part " in str(ops.xcom(DAG_ID, run_id, "backup"))

    # The workers hold no rights on Airflow's metadata tables, only on Celery's two result tables.
    roles = info["roles"]
    assert _running_result_backend_users(info) == {f"celery@{w}": roles["worker"] for w in WORKERS}
    admin = sa.make_url(PG_ADMIN_URL)
    meta = sa.create_engine(admin.set(database=info["metadata_db"]), poolclass=sa.pool.NullPool)
    store = sa.create_engine(admin.set(database=info["store_db"]), poolclass=sa.pool.NullPool)
    with meta.connect() as conn:
        meta_tables = set(
            conn.exec_driver_sql("select tablename from pg_tables where schemaname='public'").scalars()
        )
        assert {"task_instance", "dag_run", "xcom", "log", *CELERY_TABLES} <= meta_tables
        granted = conn.exec_driver_sql(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'public' and c.relkind = 'r' "
            "and has_table_privilege(%(role)s, c.oid, 'SELECT,INSERT,UPDATE,DELETE')",
            {"role": roles["worker"]},
        ).scalars()
        assert set(granted) == set(CELERY_TABLES)
        # the workers wrote their task results through that role
        results = conn.exec_driver_sql(
            "select count(*) from celery_taskmeta where status = 'SUCCESS'"
        ).scalar()
        assert results >= len(succeeded)
        can_connect = conn.exec_driver_sql(
            "select has_database_privilege(%(role)s, %(db)s, 'CONNECT')",
            {"role": roles["dereg"], "db": info["metadata_db"]},
        ).scalar()
        assert can_connect is False  # the store's role, which the tasks use, cannot reach Airflow's database
    # What the tasks recorded is in the compliance store, and none of it in Airflow's database.
    with store.connect() as conn:
        store_tables = set(
            conn.exec_driver_sql("select tablename from pg_tables where schemaname='public'").scalars()
        )
        stages = set(
            conn.exec_driver_sql(
                "select distinct stage from ledger where run_id = %(r)s", {"r": run_id}
            ).scalars()
        )
    assert {"ledger", "ledger_head"} <= store_tables
    assert not store_tables & meta_tables
    assert {"preflight", "backup_prepare", "backup_part", "backup", "notify_customers", "erase"} <= stages
    assert {"restore_backup", "restore_verify", "verify_erasure", "certificate"} <= stages
    meta.dispose()
    store.dispose()
    # The one metadata write a worker attempts, Airflow's CLI audit entry of its own start, is refused:
    # the worker's own [database] connection is the worker role too.
    for name in WORKERS:
        log = (root / "logs" / f"{name}.log").read_text()
        denied = [line for line in log.splitlines() if "permission denied" in line]
        assert denied and all("permission denied for table log" in line for line in denied), denied


def test_a_taken_port_stops_up_before_anything_is_created(dist_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(dist_env["DEREG_SCHEDULER_HEALTH_PORT"])))
        taken.listen()
        result = _cli(dist_env, "up")
    assert result.returncode == 2
    assert (
        "DEREG_SCHEDULER_HEALTH_PORT" in result.stderr
        and dist_env["DEREG_SCHEDULER_HEALTH_PORT"] in result.stderr
    )
    assert not (Path(dist_env["DEREG_STATE_DIR"]) / "distributed" / "distributed.json").exists()
    status = _cli(dist_env, "status")
    assert status.returncode == 1 and "no distributed stack" in status.stdout
