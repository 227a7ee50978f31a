"""The production topology of docker-compose.yaml, started natively on this machine's PostgreSQL and Redis.

`python -m devtools.stack.distributed up|down|status|env|demo|approve` (`make distributed-demo`).

What `up` starts, under `<DEREG_STATE_DIR or .state>/distributed/`:

- two fresh PostgreSQL databases with their own roles, as include/compose/postgres-init.sh makes
  them: Airflow's metadata (also the Celery result backend) and Dereg's compliance store; a third
  role lets the Celery workers reach the two Celery result tables and nothing else of Airflow's
- a Redis database of its own (the first empty one from 15 down to 1, or DEREG_REDIS_DB) as broker
- `airflow db migrate`, then `airflow api-server`, `scheduler`, `dag-processor`, `triggerer` and two
  `airflow celery worker` (hostnames dereg-worker-1 and dereg-worker-2, one task at a time each)
- SeaweedFS and the SMTP sink of the embedded stack, and its users ops, approver, auditor, admin

`down` stops every process group and drops the databases and roles and empties the Redis database.
PostgreSQL is reached as DEREG_PG_ADMIN_URL (default postgres@127.0.0.1:5432, which must be allowed to
create roles and databases), Redis at DEREG_REDIS_URL (default redis://127.0.0.1:6379). Ports are
those of the embedded stack (DEREG_AIRFLOW_PORT, ...) plus DEREG_SCHEDULER_HEALTH_PORT (8974); the
workers serve their logs on DEREG_WORKER_LOG_PORT (8793) and DEREG_WORKER2_LOG_PORT (8795).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dereg import config
from dereg.errors import DeregError
from devtools.stack import embedded
from devtools.stack.ports import require_free

WORKERS = ("dereg-worker-1", "dereg-worker-2")
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")
COMPONENTS = (*SERVICES, *WORKERS)
CELERY_TABLES = ("celery_taskmeta", "celery_tasksetmeta")
CELERY_SEQUENCES = ("task_id_sequence", "taskset_id_sequence")
REDIS_CLAIM_KEY = "dereg:distributed:owner"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


def root() -> Path:
    """The distributed stack's own state folder, beside the embedded stack's files."""
    return config.state_dir() / "distributed"


def use_own_state_dir() -> None:
    """Point DEREG_STATE_DIR at root(), so that the embedded stack's helpers (Airflow home, passwords,
    demo source, keyring, pid files) work under the distributed stack's folder. Idempotent."""
    if os.environ.get("DEREG_DISTRIBUTED_ROOT") == str(config.state_dir()):
        return
    target = root()
    os.environ["DEREG_STATE_DIR"] = str(target)
    os.environ["DEREG_DISTRIBUTED_ROOT"] = str(target)
    for key in ("DEREG_STORE_URL", "DEREG_KEYRING", "DEREG_OUTPUT_DIR", "AIRFLOW_HOME"):
        os.environ.pop(key, None)


def worker_hostname() -> str:
    """[core] hostname_callable of the workers: each one's own name, as each container has in Compose.

    Both workers run on this one machine, so the machine's name would not tell them apart."""
    return os.environ.get("DEREG_WORKER_HOSTNAME") or socket.getfqdn()


def ports() -> dict[str, int]:
    p = embedded.ports()
    p["scheduler_health"] = int(os.environ.get("DEREG_SCHEDULER_HEALTH_PORT", 8974))
    return p


def worker_log_port(index: int) -> int:
    """Each worker's task log server: DEREG_WORKER_LOG_PORT (8793), DEREG_WORKER2_LOG_PORT (8795)."""
    if index == 0:
        return ports()["worker_logs"]
    return int(os.environ.get(f"DEREG_WORKER{index + 1}_LOG_PORT", 8793 + 2 * index))


def _info_path() -> Path:
    return config.state_dir() / "distributed.json"


def _save_info(info: dict) -> None:
    """The stack's description (names, URLs with the roles' passwords): readable by its owner only."""
    path = _info_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(info, indent=2))


def load_info() -> dict | None:
    path = _info_path()
    return json.loads(path.read_text()) if path.exists() else None


def log_path(name: str) -> Path:
    return config.state_dir() / "logs" / f"{name}.log"


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_admin_url() -> str:
    return os.environ.get("DEREG_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _with_db(admin_url: str, user: str, db: str, password: str) -> str:
    """A URL to `db` as `user` on the admin URL's server, always with psycopg2 (SQLAlchemy 2.1 would pick
    psycopg 3 for a bare postgresql://, which Airflow's image and our lock do not have)."""
    import sqlalchemy as sa

    url = sa.make_url(admin_url).set(
        drivername="postgresql+psycopg2", username=user, password=password, database=db
    )
    return url.render_as_string(hide_password=False)


def _admin(database: str | None = None):
    import sqlalchemy as sa

    url = sa.make_url(_pg_admin_url())
    if database:
        url = url.set(database=database)
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def provision_databases() -> dict:
    """Roles and databases as include/compose/postgres-init.sh, with names unique to this stack."""
    import sqlalchemy as sa

    stack_id = secrets.token_hex(4)
    prefix = f"dereg_dist_{stack_id}"
    info = {
        "id": stack_id,
        "metadata_db": f"{prefix}_airflow",
        "store_db": f"{prefix}_dereg",
        "roles": {"airflow": f"{prefix}_airflow", "dereg": f"{prefix}_dereg", "worker": f"{prefix}_worker"},
        "passwords": {k: secrets.token_hex(12) for k in ("airflow", "dereg", "worker")},
    }
    roles, pw = info["roles"], info["passwords"]
    try:
        engine = _admin()
        with engine.connect() as conn:
            for key, role in roles.items():
                conn.exec_driver_sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{pw[key]}'")
            for db, owner in ((info["metadata_db"], roles["airflow"]), (info["store_db"], roles["dereg"])):
                conn.exec_driver_sql(f'CREATE DATABASE "{db}" OWNER "{owner}"')
                conn.exec_driver_sql(f'REVOKE ALL ON DATABASE "{db}" FROM PUBLIC')
            conn.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{info["metadata_db"]}" TO "{roles["worker"]}"')
    except sa.exc.SQLAlchemyError as exc:
        try:
            drop_databases(info)  # whatever part was created
        except sa.exc.SQLAlchemyError:
            pass
        raise DeregError(
            f"cannot prepare PostgreSQL at {sa.make_url(_pg_admin_url()).render_as_string()}: "
            f"{str(exc).splitlines()[0]}. Start PostgreSQL, or set DEREG_PG_ADMIN_URL to a role that may "
            "create roles and databases."
        ) from exc
    admin = sa.make_url(_pg_admin_url())
    info["metadata_url"] = _with_db(str(admin), roles["airflow"], info["metadata_db"], pw["airflow"])
    info["store_url"] = _with_db(str(admin), roles["dereg"], info["store_db"], pw["dereg"])
    info["result_backend"] = "db+" + _with_db(
        str(admin), roles["airflow"], info["metadata_db"], pw["airflow"]
    )
    info["worker_metadata_url"] = _with_db(str(admin), roles["worker"], info["metadata_db"], pw["worker"])
    info["worker_result_backend"] = "db+" + _with_db(
        str(admin), roles["worker"], info["metadata_db"], pw["worker"]
    )
    return info


def grant_celery_tables(info: dict) -> None:
    """Create Celery's result tables as Airflow's role, then let the workers' role use those two only.

    The workers need the result backend; they need nothing else of Airflow's database (Airflow 3 tasks
    talk to the api-server), and this proves it: any other use would fail with permission denied."""
    from celery import Celery

    app = Celery("dereg-distributed-setup", backend=info["result_backend"])
    app.backend.ResultSession().close()  # creates the tables and their sequences
    engine = _admin(info["metadata_db"])
    with engine.connect() as conn:
        worker = info["roles"]["worker"]
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA public TO "{worker}"')
        tables = ", ".join(CELERY_TABLES)
        conn.exec_driver_sql(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {tables} TO "{worker}"')
        conn.exec_driver_sql(f'GRANT USAGE, SELECT ON SEQUENCE {", ".join(CELERY_SEQUENCES)} TO "{worker}"')
    engine.dispose()


def drop_databases(info: dict) -> None:
    engine = _admin()
    with engine.connect() as conn:
        for db in (info["metadata_db"], info["store_db"]):
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for role in info["roles"].values():
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
    engine.dispose()


# --- Redis ------------------------------------------------------------------------------------


def _redis_base() -> str:
    return os.environ.get("DEREG_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")


def claim_redis_db(stack_id: str) -> int:
    """An empty Redis database for this stack alone, marked with a claim key (released by `down`)."""
    import redis

    wanted = os.environ.get("DEREG_REDIS_DB")
    candidates = [int(wanted)] if wanted else list(range(15, 0, -1))
    try:
        for number in candidates:
            client = redis.Redis.from_url(f"{_redis_base()}/{number}")
            if client.dbsize() == 0 and client.set(REDIS_CLAIM_KEY, stack_id, nx=True):
                return number
    except redis.RedisError as exc:
        raise DeregError(
            f"cannot use Redis at {_redis_base()}: {exc}. Start Redis or set DEREG_REDIS_URL."
        ) from exc
    raise DeregError(
        f"no empty Redis database among {candidates} at {_redis_base()}; free one or choose it with "
        "DEREG_REDIS_DB=<number>"
    )


def release_redis_db(info: dict) -> None:
    import redis

    client = redis.Redis.from_url(f"{_redis_base()}/{info['redis_db']}")
    if client.get(REDIS_CLAIM_KEY) == info["id"].encode():
        client.flushdb()


# --- Airflow's environment ----------------------------------------------------------------------


def airflow_env(info: dict) -> dict[str, str]:
    """The embedded stack's environment with the production settings of docker-compose.yaml."""
    from devtools.stack.seaweed import ACCESS_KEY, SECRET_KEY

    p = ports()
    env = embedded.stack_env()
    fernet = config.state_dir() / "airflow" / "fernet_key"
    if not fernet.exists():
        from cryptography.fernet import Fernet

        fernet.write_text(Fernet.generate_key().decode())
    env.update(
        {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": info["metadata_url"],
            "AIRFLOW__CELERY__RESULT_BACKEND": info["result_backend"],
            "AIRFLOW__CELERY__BROKER_URL": f"{_redis_base()}/{info['redis_db']}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CORE__FERNET_KEY": fernet.read_text().strip(),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(p["scheduler_health"]),
            "AIRFLOW__EMAIL__EMAIL_CONN_ID": "dereg_smtp",
            "AIRFLOW__EMAIL__FROM_EMAIL": "Dereg <dereg@localhost>",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "DEREG_STORE_URL": info["store_url"],
            "DEREG_DISTRIBUTED_ROOT": str(config.state_dir()),  # see use_own_state_dir()
            "DEREG_INCLUDE_DIR": str(config.include_dir()),
            "DEREG_COMPANIES_DIR": str(config.companies_dir()),
            # as in Compose: empty means the source's own server / the keyring
            "DEREG_SCRATCH_PG_URL": os.environ.get("DEREG_SCRATCH_PG_URL", ""),
            "DEREG_KMS_KEY_ID": os.environ.get("DEREG_KMS_KEY_ID", ""),
            "DEREG_RETRY_DELAY_SECONDS": os.environ.get("DEREG_RETRY_DELAY_SECONDS", "30"),
            # `dereg backup/restore/shred` run with `eval "$(... env)"` reach the same store
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{p['s3']}",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "cn-north-1",
        }
    )
    return env


def worker_env(info: dict, index: int) -> dict[str, str]:
    """A worker's environment: its own name and log port, and no credentials for Airflow's tables."""
    env = airflow_env(info)
    env.update(
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": info["worker_metadata_url"],
            "AIRFLOW__CELERY__RESULT_BACKEND": info["worker_result_backend"],
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.stack.distributed.worker_hostname",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_log_port(index)),
            "DEREG_WORKER_HOSTNAME": WORKERS[index],
        }
    )
    return env


# --- processes ----------------------------------------------------------------------------------


def _airflow() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _check_ports() -> None:
    p = ports()
    wanted = {
        **{k: p[k] for k in ("airflow", "scheduler_health", "trigger_logs", "smtp", "s3")},
        **{name: worker_log_port(i) for i, name in enumerate(WORKERS)},
    }
    seen: dict[int, str] = {}
    for what, port in wanted.items():
        if port in seen:
            raise DeregError(
                f"port {port} is configured for both {seen[port]} and {what}; give each its own "
                "(DEREG_AIRFLOW_PORT, DEREG_SCHEDULER_HEALTH_PORT, DEREG_TRIGGER_LOG_PORT, DEREG_SMTP_PORT, "
                "DEREG_S3_PORT, DEREG_WORKER_LOG_PORT, DEREG_WORKER2_LOG_PORT)"
            )
        seen[port] = what
    for key, what, var in (
        ("airflow", "the Airflow api-server", "DEREG_AIRFLOW_PORT"),
        ("scheduler_health", "the scheduler's health check", "DEREG_SCHEDULER_HEALTH_PORT"),
        ("trigger_logs", "the triggerer's log server", "DEREG_TRIGGER_LOG_PORT"),
        ("smtp", "the SMTP sink", "DEREG_SMTP_PORT"),
        ("s3", "the S3 store (SeaweedFS)", "DEREG_S3_PORT"),
    ):
        require_free(p[key], what, var)
    for index, name in enumerate(WORKERS):
        var = "DEREG_WORKER_LOG_PORT" if index == 0 else f"DEREG_WORKER{index + 1}_LOG_PORT"
        require_free(worker_log_port(index), f"{name}'s log server", var)


def up(timeout: float = 300) -> dict:
    """Start the whole topology (nothing may run yet); return the stack's description."""
    if load_info() is not None:
        raise DeregError(
            f"a distributed stack already runs from {config.state_dir()}; "
            "stop it first with `python -m devtools.stack.distributed down`"
        )
    _check_ports()
    info = provision_databases()
    info["redis_db"] = None
    _save_info(info)  # from here on, `down` can clean up
    try:
        info["redis_db"] = claim_redis_db(info["id"])
        _save_info(info)
        _start(info, timeout)
    except BaseException:
        down()
        raise
    return info


def _start(info: dict, timeout: float) -> None:
    from dereg.keys import Keyring

    p = ports()
    env = airflow_env(info)
    Keyring.load_or_create(config.keyring_path())
    print(f"  PostgreSQL      {info['metadata_db']} (Airflow), {info['store_db']} (compliance store)")
    print(f"  Redis           {_redis_base()}/{info['redis_db']}")
    # SeaweedFS takes a while to elect its master and register its volume, mostly waiting: start it
    # and the SMTP sink beside the migration and Airflow's start-up.
    with ThreadPoolExecutor(max_workers=1) as pool:
        store_and_mail = pool.submit(embedded.start_store_and_mail, p, env)
        t0 = time.monotonic()
        migrate = subprocess.run(
            [_airflow(), "db", "migrate"], env={**os.environ, **env}, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise DeregError(
                f"`airflow db migrate` failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-2000:]}"
            )
        grant_celery_tables(info)
        print(f"  migrated        Airflow's metadata database in {time.monotonic() - t0:.0f} s")
        procs = {name: embedded._spawn(name, [_airflow(), name], env) for name in SERVICES}
        for index, name in enumerate(WORKERS):
            cmd = [_airflow(), "celery", "worker", "--celery-hostname", name, "--concurrency", "1"]
            procs[name] = embedded._spawn(name, cmd, worker_env(info, index))
        store_and_mail.result()
    wait_healthy(info, procs, timeout)
    print(f"  Airflow         http://127.0.0.1:{p['airflow']}  (logs: {config.state_dir() / 'logs'})")


def _component_health(info: dict) -> dict[str, bool]:
    import requests

    p = ports()
    ready = dict.fromkeys(COMPONENTS, False)
    session = requests.Session()
    session.trust_env = False
    try:
        r = session.get(f"http://127.0.0.1:{p['airflow']}/api/v2/monitor/health", timeout=10)
        if r.ok:
            ready["api-server"] = True
            health = r.json()
            ready["triggerer"] = (health.get("triggerer") or {}).get("status") == "healthy"
            ready["dag-processor"] = (health.get("dag_processor") or {}).get("status") == "healthy"
    except requests.RequestException:
        pass
    try:
        ready["scheduler"] = session.get(f"http://127.0.0.1:{p['scheduler_health']}/health", timeout=10).ok
    except requests.RequestException:
        pass
    for name, answered in ping_workers(info).items():
        ready[name] = answered
    return ready


def ping_workers(info: dict, timeout: float = 1.0) -> dict[str, bool]:
    """`celery inspect ping` of each worker over the broker."""
    from celery import Celery

    app = Celery("dereg-distributed-ping", broker=f"{_redis_base()}/{info['redis_db']}")
    try:
        replies = app.control.ping(destination=[f"celery@{w}" for w in WORKERS], timeout=timeout)
    except Exception:  # noqa: BLE001 - an unreachable broker means no worker answered
        replies = []
    finally:
        app.close()
    answered = {name.split("@", 1)[1] for reply in replies for name in reply}
    return {w: w in answered for w in WORKERS}


def wait_healthy(info: dict, procs: dict[str, subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ready: dict[str, bool] = {}
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise DeregError(
                    f"{name} exited with code {proc.returncode} while starting; see {log_path(name)}"
                )
        ready = _component_health(info)
        if all(ready.values()):
            return
        time.sleep(0.5)
    waiting = [name for name, ok in ready.items() if not ok]
    raise DeregError(
        f"not healthy within {timeout:.0f} s: "
        + "; ".join(f"{name} (see {log_path(name)})" for name in waiting)
    )


def ensure_up() -> None:
    """Start the stack, or check that the one already started is whole."""
    info = load_info()
    if info is None:
        up()
        return
    unhealthy = [name for name, ok in _component_health(info).items() if not ok]
    if unhealthy:
        raise DeregError(
            "the distributed stack under "
            f"{config.state_dir()} is not healthy ({', '.join(unhealthy)}; logs in {log_path('*').parent}); "
            "restart it with `make distributed-down` first"
        )
    print(f"  already running: Airflow at http://127.0.0.1:{ports()['airflow']}")


def down() -> None:
    embedded.stop([*reversed(COMPONENTS), "smtp"])
    embedded.stop(["seaweedfs"], grace=5)  # it rarely stops on SIGTERM alone
    info = load_info()
    if info is None:
        return
    drop_databases(info)
    print(f"  dropped         {info['metadata_db']}, {info['store_db']} and their roles")
    if info.get("redis_db") is not None:
        release_redis_db(info)
        print(f"  emptied         Redis database {info['redis_db']}")
    _info_path().unlink()


def status() -> int:
    info = load_info()
    if info is None:
        print("  no distributed stack (start one with `make distributed-demo`)")
        return 1
    ready = _component_health(info)
    code = 0
    for name in (*COMPONENTS, "smtp", "seaweedfs"):
        pid = embedded._running(name)
        healthy = ready.get(name, pid is not None)
        text = f"running (pid {pid})" if pid else "stopped"
        if pid and not healthy:
            text += ", not healthy"
        print(f"  {name:15} {text}")
        code |= not (pid and healthy)
    print(f"  PostgreSQL      {info['metadata_db']}, {info['store_db']}; Redis db {info['redis_db']}")
    return code


def _print_env() -> None:
    info = load_info()
    if info is None:
        raise DeregError("no distributed stack runs; start it with `make distributed-demo`")
    for k, v in airflow_env(info).items():
        print(f"export {k}={json.dumps(v) if not v.startswith('{') else repr(v)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the topology")
    sub.add_parser("down", help="stop it and drop its databases")
    sub.add_parser("status", help="each component's state")
    sub.add_parser("env", help="print the Airflow environment (export lines)")
    d = sub.add_parser(
        "demo", help="start it, seed the demo school and run its closure (make distributed-demo)"
    )
    d.add_argument("--students", type=int, default=500)
    d.add_argument("--timeout", type=float, default=3600)
    sub.add_parser("approve", help="approve the waiting demo run as approver")
    args = parser.parse_args(argv)
    use_own_state_dir()
    from devtools.stack import demo

    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        elif args.command == "env":
            _print_env()
        elif args.command == "demo":
            return demo.run(
                args.students,
                args.timeout,
                start=ensure_up,
                label="the distributed stack (Celery workers) under " + str(config.state_dir()),
                approve_hint="make distributed-approve",
                fresh_hint="make distributed-down",
                verify_prefix='eval "$(.venv/bin/python -m devtools.stack.distributed env)" && ',
            )
        else:
            return demo.approve()
    except DeregError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
