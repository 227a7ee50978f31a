"""devtools.stack.distributed without servers: its environment against docker-compose.yaml, its errors.

The topology itself is started for real in tests/e2e/test_distributed.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dereg.errors import DeregError
from devtools.stack import distributed

ROOT = Path(__file__).resolve().parents[2]

INFO = {
    "id": "0123abcd",
    "metadata_db": "dereg_dist_0123abcd_airflow",
    "store_db": "dereg_dist_0123abcd_dereg",
    "roles": {"airflow": "r_airflow", "dereg": "r_dereg", "worker": "r_worker"},
    "metadata_url": "postgresql+psycopg2://r_airflow:a@127.0.0.1:5432/dereg_dist_0123abcd_airflow",
    "store_url": "postgresql+psycopg2://r_dereg:d@127.0.0.1:5432/dereg_dist_0123abcd_dereg",
    "result_backend": "db+postgresql+psycopg2://r_airflow:a@127.0.0.1:5432/dereg_dist_0123abcd_airflow",
    "worker_metadata_url": "postgresql+psycopg2://r_worker:w@127.0.0.1:5432/dereg_dist_0123abcd_airflow",
    "worker_result_backend": "db+postgresql+psycopg2://r_worker:w@127.0.0.1:5432/dereg_dist_0123abcd_airflow",
    "redis_db": 14,
}


def _compose_env() -> dict:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    return compose["x-airflow-common"]["environment"]


def test_every_variable_of_the_compose_stack_is_set():
    env = distributed.airflow_env(INFO)
    assert set(_compose_env()) - set(env) == set()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("/14")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == INFO["metadata_url"]
    assert env["DEREG_STORE_URL"] == INFO["store_url"] != env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert (
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
        == _compose_env()["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"]
    )


def test_workers_get_their_own_name_and_log_port_and_no_rights_on_airflow_tables():
    envs = [distributed.worker_env(INFO, i) for i in range(len(distributed.WORKERS))]
    assert [e["DEREG_WORKER_HOSTNAME"] for e in envs] == list(distributed.WORKERS)
    assert len({e["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] for e in envs}) == len(envs)
    for env in envs:
        assert "r_airflow" not in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert "r_airflow" not in env["AIRFLOW__CELERY__RESULT_BACKEND"]
        assert env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] == "devtools.stack.distributed.worker_hostname"


def test_worker_hostname(monkeypatch):
    monkeypatch.setenv("DEREG_WORKER_HOSTNAME", "dereg-worker-2")
    assert distributed.worker_hostname() == "dereg-worker-2"
    monkeypatch.delenv("DEREG_WORKER_HOSTNAME")
    assert distributed.worker_hostname()


def test_a_component_that_exits_is_named_with_its_log(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(timeout=30)
    with pytest.raises(DeregError) as err:
        distributed.wait_healthy(INFO, {"scheduler": proc}, timeout=30)
    message = str(err.value)
    assert "scheduler exited with code 3" in message
    assert str(distributed.log_path("scheduler")) in message


def test_default_ports_do_not_collide(monkeypatch):
    for var in (
        "DEREG_AIRFLOW_PORT",
        "DEREG_TRIGGER_LOG_PORT",
        "DEREG_WORKER_LOG_PORT",
        "DEREG_WORKER2_LOG_PORT",
    ):
        monkeypatch.delenv(var, raising=False)
    p = distributed.ports()
    used = [p["airflow"], p["scheduler_health"], p["trigger_logs"], p["smtp"], p["s3"]]
    used += [distributed.worker_log_port(i) for i in range(len(distributed.WORKERS))]
    assert len(set(used)) == len(used), used


def test_two_components_on_one_port_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DEREG_WORKER2_LOG_PORT", "18794")
    monkeypatch.setenv("DEREG_TRIGGER_LOG_PORT", "18794")
    with pytest.raises(DeregError, match="port 18794 is configured for both"):
        distributed._check_ports()
