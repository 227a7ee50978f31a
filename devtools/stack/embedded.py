"""The embedded stack of `make demo`: SeaweedFS, the SMTP sink and `airflow standalone`, under `.state/`.

`python -m devtools.stack.embedded up|down|status|env`. Ports come from DEREG_AIRFLOW_PORT (8080),
DEREG_S3_PORT (8333; SeaweedFS also takes the three ports after it and their +10000 gRPC twins)
and DEREG_SMTP_PORT (8025). A taken port is reported at once, never waited on.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dereg import config
from dereg.errors import DeregError
from devtools.stack.ports import require_free, wait_for_port

USERS = {"ops": "user", "approver": "user", "auditor": "viewer", "admin": "admin"}


def ports() -> dict[str, int]:
    return {
        "airflow": int(os.environ.get("DEREG_AIRFLOW_PORT", 8080)),
        "s3": int(os.environ.get("DEREG_S3_PORT", 8333)),
        "smtp": int(os.environ.get("DEREG_SMTP_PORT", 8025)),
        "worker_logs": int(os.environ.get("DEREG_WORKER_LOG_PORT", 8793)),
        "trigger_logs": int(os.environ.get("DEREG_TRIGGER_LOG_PORT", 8794)),
    }


def airflow_home() -> Path:
    return config.state_dir() / "airflow"


def passwords() -> dict[str, str]:
    """Demo passwords, fixed per state folder so the README and the REST client agree."""
    path = airflow_home() / "passwords.json"
    if path.exists():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {user: f"{user}-{secrets.token_hex(3)}" for user in USERS}
    path.write_text(json.dumps(data, indent=2))
    return data


def demo_source_path() -> Path:
    return config.state_dir() / "demo_academy.db"


def stack_env() -> dict[str, str]:
    """Environment for Airflow processes and the `dereg` CLI of the embedded stack."""
    from devtools.stack.seaweed import ACCESS_KEY, SECRET_KEY

    p = ports()
    home = airflow_home()
    secret_file = home / "secret"
    if not secret_file.exists():
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(secrets.token_hex(32))
    secret = secret_file.read_text().strip()
    passwords()  # make sure the file exists before Airflow reads it
    repo = config.REPO_ROOT
    state = config.state_dir()
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{p['airflow']}/execution/",
        "AIRFLOW__API__PORT": str(p["airflow"]),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(p["worker_logs"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(p["trigger_logs"]),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{p['airflow']}",
        "AIRFLOW__API_AUTH__JWT_SECRET": secret,
        "AIRFLOW__API__SECRET_KEY": secret,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_DEMO_ACADEMY_DB": json.dumps({"conn_type": "sqlite", "host": str(demo_source_path())}),
        "AIRFLOW_CONN_DEREG_OFFSITE": json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": f"http://127.0.0.1:{p['s3']}", "region_name": "cn-north-1"},
            }
        ),
        "AIRFLOW_CONN_DEREG_SMTP": json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": p["smtp"],
                "extra": {"disable_ssl": True, "disable_tls": True},
            }
        ),
        "DEREG_STATE_DIR": str(state),
        "DEREG_STORE_URL": config.store_url(),
        "DEREG_KEYRING": str(config.keyring_path()),
        "DEREG_OUTPUT_DIR": str(config.output_dir()),
        "NO_PROXY": "*",
        # `airflow standalone` starts its components as `airflow ...` found on PATH
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _pid_file(name: str) -> Path:
    return config.state_dir() / "pids" / f"{name}.pid"


def _running(name: str) -> int | None:
    path = _pid_file(name)
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink()
        return None
    return pid


def _spawn(name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    logs = config.state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / f"{name}.log", "ab")
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
        start_new_session=True,
        cwd=config.REPO_ROOT,
    )
    _pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    _pid_file(name).write_text(str(proc.pid))
    return proc


def _require_store_ports(p: dict[str, int]) -> None:
    require_free(p["s3"], "the S3 store (SeaweedFS)", "DEREG_S3_PORT")
    require_free(p["s3"] + 10000, "SeaweedFS S3 gRPC", "DEREG_S3_PORT")
    for offset in (1, 2, 3):
        require_free(p["s3"] + offset, "SeaweedFS internals", "DEREG_S3_PORT")
        require_free(p["s3"] + offset + 10000, "SeaweedFS gRPC", "DEREG_S3_PORT")


def start_store_and_mail(p: dict[str, int], env: dict[str, str]) -> None:
    """SeaweedFS (the off-site S3 store, Object Lock) and the SMTP sink, unless they already run."""
    state = config.state_dir()
    if not _running("seaweedfs"):
        _require_store_ports(p)
        from devtools.stack.seaweed import start_seaweedfs

        logs = state / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        server = start_seaweedfs(state / "seaweedfs", p["s3"], log_path=logs / "seaweedfs.log", timeout=90)
        _pid_file("seaweedfs").parent.mkdir(parents=True, exist_ok=True)
        _pid_file("seaweedfs").write_text(str(server.process.pid))  # its own session: killpg stops it
        print(f"  SeaweedFS S3    http://127.0.0.1:{p['s3']}")
    if not _running("smtp"):
        require_free(p["smtp"], "the SMTP sink", "DEREG_SMTP_PORT")
        proc = _spawn(
            "smtp",
            [
                sys.executable,
                "-m",
                "devtools.stack.smtp_sink",
                "--port",
                str(p["smtp"]),
                "--dir",
                str(state / "mail"),
            ],
            env,
        )
        wait_for_port(p["smtp"], 30, "SMTP sink", proc=proc)
        print(f"  SMTP sink       127.0.0.1:{p['smtp']} -> {state / 'mail'}")


def up(timeout: float = 240) -> None:
    from dereg.keys import Keyring

    p = ports()
    env = stack_env()
    state = config.state_dir()
    # Check every port first, so that a taken one stops us before anything starts.
    if not _running("airflow"):
        for key, what, var in (
            ("airflow", "Airflow", "DEREG_AIRFLOW_PORT"),
            ("worker_logs", "Airflow's task log server", "DEREG_WORKER_LOG_PORT"),
            ("trigger_logs", "Airflow's triggerer log server", "DEREG_TRIGGER_LOG_PORT"),
        ):
            require_free(p[key], what, var)
    if not _running("smtp"):
        require_free(p["smtp"], "the SMTP sink", "DEREG_SMTP_PORT")
    if not _running("seaweedfs"):
        _require_store_ports(p)
    Keyring.load_or_create(config.keyring_path())
    if _running("airflow"):
        start_store_and_mail(p, env)
        return
    require_free(p["airflow"], "Airflow", "DEREG_AIRFLOW_PORT")
    require_free(p["worker_logs"], "Airflow's task log server", "DEREG_WORKER_LOG_PORT")
    require_free(p["trigger_logs"], "Airflow's triggerer log server", "DEREG_TRIGGER_LOG_PORT")
    # SeaweedFS takes a few seconds to elect its master and register its volume, mostly waiting:
    # start it and the SMTP sink beside the migration (CPU), and Airflow once both are done, since
    # its scheduled DAGs reach the store as soon as it runs.
    with ThreadPoolExecutor(max_workers=1) as pool:
        store_and_mail = pool.submit(start_store_and_mail, p, env)
        airflow = str(Path(sys.executable).parent / "airflow")
        migrate = subprocess.run(
            [airflow, "db", "migrate"], env={**os.environ, **env}, capture_output=True, text=True
        )
        store_and_mail.result()
    if migrate.returncode != 0:
        raise DeregError(f"`airflow db migrate` failed:\n{migrate.stdout[-2000:]}\n{migrate.stderr[-2000:]}")
    proc = _spawn("airflow", [airflow, "standalone"], env)
    wait_for_port(p["airflow"], timeout, "Airflow standalone", proc=proc)
    _wait_healthy(p["airflow"], timeout)
    print(f"  Airflow         http://127.0.0.1:{p['airflow']}  (logs: {state / 'logs' / 'airflow.log'})")


def _wait_healthy(port: int, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3)
            if r.ok and r.json().get("scheduler", {}).get("status") == "healthy":
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise DeregError(
        f"Airflow on port {port} did not become healthy within {timeout:.0f} s; "
        f"see {config.state_dir() / 'logs' / 'airflow.log'}"
    )


def stop(names: tuple[str, ...] | list[str], grace: float = 20) -> None:
    """Stop the named processes of the state folder: SIGTERM to each process group, SIGKILL after `grace` s."""
    pids = {}
    for name in names:
        pid = _running(name)
        if pid is None:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        pids[name] = pid
    deadline = time.monotonic() + grace
    for name, pid in pids.items():
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        try:
            os.killpg(pid, signal.SIGKILL)  # the leader's children too, even if the leader has exited
        except ProcessLookupError:
            pass
        _pid_file(name).unlink(missing_ok=True)
        print(f"  stopped {name}")


def down() -> None:
    stop(("airflow", "smtp"))
    stop(("seaweedfs",), grace=5)  # it rarely stops on SIGTERM alone


def status() -> int:
    code = 0
    for name in ("seaweedfs", "smtp", "airflow"):
        pid = _running(name)
        print(f"  {name:10} {f'running (pid {pid})' if pid else 'stopped'}")
        code |= pid is None
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        else:
            for k, v in stack_env().items():
                print(f"export {k}={json.dumps(v) if not v.startswith('{') else repr(v)}")
    except DeregError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
