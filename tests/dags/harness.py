"""Run Airflow DAGs for real in tests: `dag.test()` in a child process with its own AIRFLOW_HOME, and
a second process that answers the approval through Airflow's REST API as another user.

Airflow reads its configuration once per process, so every run gets a fresh process and home.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"ops": "ops-pw", "approver": "approver-pw", "auditor": "auditor-pw", "dag_test": "dag-test-pw"}

_RUN_DAG = textwrap.dedent("""
    import json, os, sys, time
    # dag.test() sleeps a second whenever no task is ready: while a failure reaches the tasks below
    # it (one level per pass) and while the approval waits for its answer. A tenth is enough here.
    _sleep = time.sleep
    def _poll_sleep(seconds):
        caller = sys._getframe(1).f_code.co_filename
        _sleep(0.1 if seconds == 1 and caller.endswith(os.path.join("sdk", "definitions", "dag.py")) else seconds)
    time.sleep = _poll_sleep
    # The in-process Task Execution API: the task SDK in this process speaks only the newest API
    # version, so Cadwyn builds the routes of that version alone (it builds every older version's on
    # the first request otherwise: about 5 s of CPU per run). A request in an older version would get
    # an error, not a silent pass. Routes that exist only in older versions go with them.
    import airflow.api_fastapi.execution_api.versions as _versions
    from cadwyn import Cadwyn, HeadVersion, Version, VersionBundle
    _versions.bundle = VersionBundle(HeadVersion(), Version(_versions.bundle.versions[0].value))
    _initialize = Cadwyn._cadwyn_initialize
    def _newest_version_only(app):
        routes = app._latest_version_router.routes
        routes[:] = [r for r in routes if "_CADWYN_DELETED_ROUTE" not in getattr(r, "tags", ())]
        _initialize(app)
    Cadwyn._cadwyn_initialize = _newest_version_only
    from airflow.dag_processing.dagbag import DagBag
    dag_id, conf, hold = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "hold"
    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        print("IMPORT_ERRORS", json.dumps({k: v[-500:] for k, v in bag.import_errors.items()}))
    dag = bag.get_dag(dag_id)
    if hold:  # imported and parsed; the run starts when the test says so (a line on stdin)
        sys.stdin.readline()
    run = dag.test(run_conf=conf)
    tis = run.get_task_instances()
    states = {}
    for ti in tis:  # a mapped task shows its worst instance
        if states.get(ti.task_id, "success") == "success":
            states[ti.task_id] = str(ti.state)
    mapped = {}
    for ti in tis:
        if ti.map_index >= 0:
            mapped.setdefault(ti.task_id, []).append(
                [ti.map_index, getattr(ti, "rendered_map_index", None), str(ti.state)]
            )
    result = {"state": str(run.state), "run_id": run.run_id, "tasks": states, "mapped": mapped}
    print("DAG_TEST_RESULT " + json.dumps(result))
""")

_ANSWER = textwrap.dedent("""
    import json, sys, time
    from fastapi.testclient import TestClient
    from airflow.api_fastapi.app import create_app
    dag_id, task_id, user, password, option, timeout = sys.argv[1:7]
    client = TestClient(create_app("core"))  # the public REST API; no Task Execution API needed here
    token = client.post("/auth/token", json={"username": user, "password": password}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        runs = client.get(f"/api/v2/dags/{dag_id}/dagRuns", headers=headers).json().get("dag_runs", [])
        for run in runs:
            rid = run["dag_run_id"]
            tis = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{rid}/taskInstances", headers=headers).json()
            states = {t["task_id"]: t["state"] for t in tis.get("task_instances", [])}
            if states.get(task_id) == "awaiting_input":
                r = client.patch(f"/api/v2/dags/{dag_id}/dagRuns/{rid}/taskInstances/{task_id}/-1/hitlDetails",
                                 headers=headers, json={"chosen_options": [option], "params_input": {}})
                print("ANSWER_RESULT " + json.dumps({"status": r.status_code, "body": r.text[:300]}))
                sys.exit(0)
            if run["state"] in ("success", "failed"):
                print("ANSWER_RESULT " + json.dumps({"status": 0, "body": "run ended " + run["state"]}))
                sys.exit(0)
        time.sleep(0.25)
    print("ANSWER_RESULT " + json.dumps({"status": -1, "body": "timed out"}))
""")


def _home_env(home: Path, dags_folder: Path = ROOT / "dags") -> dict[str, str]:
    """The environment of the Airflow home `home` (created, with its users' passwords file)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "passwords.json").write_text(json.dumps(PASSWORDS))
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:user" for u in PASSWORDS),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "dereg-test-jwt-secret-" + "x" * 48,
        "AIRFLOW__API__SECRET_KEY": "dereg-test-secret-key",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "NO_PROXY": "*",
        # a stage that fails in a test is retried at once, not after the closure DAG's 30 s
        "DEREG_RETRY_DELAY_SECONDS": "1",
    }


class AirflowSandbox:
    """An AIRFLOW_HOME with a migrated SQLite metadata DB, and the environment to run DAGs in it."""

    def __init__(self, home: Path, *, dags_folder: Path = ROOT / "dags", env: dict[str, str] | None = None):
        self.home = home
        self.env = {**_home_env(home, dags_folder), **(env or {})}
        self._migrate()

    def _migrate(self) -> None:
        migrate_metadata_db(self.home, self.env)

    def start_dag_test(self, dag_id: str, conf: dict, *, hold: bool = False) -> subprocess.Popen:
        """Start `dag.test()` of `dag_id` in a child process. With `hold`, the child imports Airflow
        and parses the DAGs (seconds of CPU), then waits for `release` before it starts the run."""
        log = open(self.home / f"dag_test_{dag_id}_{time.monotonic_ns()}.log", "w+")
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_DAG, dag_id, json.dumps(conf), "hold" if hold else "go"],
            env=self.env,
            stdin=subprocess.PIPE if hold else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            text=True,
        )
        proc.log_file = log  # type: ignore[attr-defined]
        return proc

    @staticmethod
    def release(proc: subprocess.Popen) -> None:
        """Let a process started with `hold` start its run."""
        proc.stdin.write("go\n")
        proc.stdin.close()

    @staticmethod
    def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[dict, str]:
        """Wait for a `start_dag_test` process; return (result, full log)."""
        try:
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        log = proc.log_file  # type: ignore[attr-defined]
        log.seek(0)
        output = log.read()
        for line in output.splitlines():
            if line.startswith("DAG_TEST_RESULT "):
                return json.loads(line.removeprefix("DAG_TEST_RESULT ")), output
        raise AssertionError(f"dag.test did not report a result (exit {proc.returncode}):\n{output[-5000:]}")

    def run_dag(self, dag_id: str, conf: dict, timeout: float = 600) -> tuple[dict, str]:
        return self.finish(self.start_dag_test(dag_id, conf), timeout)

    def answer(
        self,
        dag_id: str,
        *,
        user: str = "approver",
        option: str = "Approve",
        task_id: str = "approve",
        timeout: float = 400,
    ) -> dict:
        """Answer the approval as `user` through the REST API (a separate process, sharing the metadata DB)."""
        result = subprocess.run(
            [sys.executable, "-c", _ANSWER, dag_id, task_id, user, PASSWORDS[user], option, str(timeout)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            cwd=ROOT,
        )
        for line in result.stdout.splitlines():
            if line.startswith("ANSWER_RESULT "):
                return json.loads(line.removeprefix("ANSWER_RESULT "))
        raise AssertionError(f"approver process failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


#: a metadata DB migrated once per test session; each Airflow home starts from a copy of it (an
#: `airflow db migrate` costs 5-10 s, and every home gets the same empty schema)
_MIGRATED: list[Path] = []
#: that migration when started ahead (`start_template_migration`): (process, its home)
_PENDING: list[tuple[subprocess.Popen, Path]] = []


def start_template_migration() -> None:
    """Start migrating the session's template metadata DB in a home of its own, in the background:
    the suite runs serially, so the migration takes the other core while the first tests set up,
    and the first Airflow home copies its result instead of migrating."""
    if _MIGRATED or _PENDING:
        return
    home = Path(tempfile.mkdtemp(prefix="dereg-airflow-db-"))
    airflow = str(Path(sys.executable).parent / "airflow")
    env = {**_home_env(home), "DEREG_STATE_DIR": str(home / "state")}  # before _isolated_state
    for key in ("DEREG_STORE_URL", "DEREG_KEYRING"):
        env.pop(key, None)
    log = open(home / "migrate.log", "w")
    proc = subprocess.Popen([airflow, "db", "migrate"], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child has its own descriptor
    _PENDING.append((proc, home))


def stop_template_migration() -> None:
    """The session ends: end a template migration no test waited for, and delete the template."""
    while _PENDING:
        proc, home = _PENDING.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        shutil.rmtree(home, ignore_errors=True)
    while _MIGRATED:
        shutil.rmtree(_MIGRATED.pop().parent, ignore_errors=True)


def _await_template() -> None:
    """The migration started ahead becomes the template when it succeeded; else the first home
    migrates itself, and says why if it fails too."""
    while _PENDING:
        proc, home = _PENDING.pop()
        try:
            code = proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            continue
        if code == 0 and (home / "airflow.db").exists() and not _MIGRATED:
            _MIGRATED.append(home / "airflow.db")


def migrate_metadata_db(home: Path, env: dict[str, str]) -> None:
    """Give the Airflow home `home` (run with `env`) a migrated metadata DB: a copy of the SQLite DB
    migrated first in this session, or `airflow db migrate` for the first home or another database."""
    default_db = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env  # the SQLite file in the home
    if default_db:
        _await_template()
    if default_db and _MIGRATED and _MIGRATED[0].exists():
        shutil.copyfile(_MIGRATED[0], home / "airflow.db")
        return
    airflow = str(Path(sys.executable).parent / "airflow")
    result = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    if default_db and not _MIGRATED:
        template = Path(tempfile.mkdtemp(prefix="dereg-airflow-db-")) / "airflow.db"
        shutil.copyfile(home / "airflow.db", template)
        _MIGRATED.append(template)


def store_connections(seaweed, smtp_sink=None) -> dict[str, str]:
    """The Airflow connections of the off-site store (SeaweedFS) and, given a sink, of the SMTP server,
    as the environment variables a sandbox's processes read."""
    env = {
        "AIRFLOW_CONN_DEREG_OFFSITE": json.dumps(
            {
                "conn_type": "aws",
                "login": seaweed.access_key,
                "password": seaweed.secret_key,
                "extra": {"endpoint_url": seaweed.endpoint_url, "region_name": "cn-north-1"},
            }
        )
    }
    if smtp_sink is not None:
        env["AIRFLOW_CONN_DEREG_SMTP"] = json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": smtp_sink.port,
                "extra": {"disable_ssl": True, "disable_tls": True},
            }
        )
    return env
