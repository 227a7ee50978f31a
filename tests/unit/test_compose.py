"""docker-compose.yaml, without a Docker engine: the Compose Specification's JSON schema and the topology.

The schema is vendored in tests/data/compose-spec.json (source and licence: tests/data/README.md).
The file is checked twice: as written (anchors and merge keys resolved, `${...}` left in place)
and after interpolation with the values of .env.example, every empty secret filled with a dummy,
which is what Docker Compose itself validates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from devtools.stack.embedded import USERS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"

AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
AIRFLOW_SERVICES = {"airflow-init", *AIRFLOW_COMMANDS}
ISSUE_SERVICES = {"postgres", "redis", "seaweedfs", "mailpit", *AIRFLOW_SERVICES}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME; $$ is a literal $.
VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def _without_escapes(text: str) -> str:
    return text.replace("$$", "")


def used_variables(text: str) -> set[str]:
    return {m["braced"] or m["bare"] for m in VAR.finditer(_without_escapes(text))}


def interpolate(value, env: dict[str, str]):
    """Compose-style interpolation of every string in a loaded compose document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        name = m["braced"] or m["bare"]
        op, arg = m["op"], m["arg"] or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and missing:
            raise AssertionError(f"required variable {name} is not set: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return current or ""

    parts = value.split("$$")
    return "$".join(VAR.sub(one, part) for part in parts)


def parse_env_example() -> tuple[dict[str, str], dict[str, str]]:
    """Variables of .env.example and the comment written just above each.

    Variables on consecutive lines share the comment above the first (an access key and its secret).
    """
    values, comments, block, shared = {}, {}, [], ""
    for line in ENV_EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text and not text.startswith("---"):
                block.append(text)
        elif not stripped:
            block, shared = [], ""
        else:
            name, _, value = stripped.partition("=")
            shared = " ".join(block) or shared
            values[name], comments[name], block = value, shared, []
    return values, comments


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    values, _ = parse_env_example()
    return {name: value or f"dummy-{name.lower()}" for name, value in values.items()}


@pytest.fixture(scope="module")
def compose(raw, env) -> dict:
    return interpolate(raw, env)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator, document) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


# --- the Compose Specification ---------------------------------------------------------------


def test_schema_is_the_compose_specification(validator):
    assert validator.schema["$id"] == "compose_spec.json"
    assert validator.schema["title"] == "Compose Specification"
    service = validator.schema["definitions"]["service"]["properties"]
    assert "healthcheck" in service and "depends_on" in service


def test_compose_file_is_valid_as_written(validator, raw):
    assert _errors(validator, raw) == []


def test_compose_file_is_valid_after_interpolation(validator, compose):
    assert _errors(validator, compose) == []


def test_validator_rejects_what_compose_rejects(validator, raw):
    """The schema check is not vacuous: a misspelt key and a wrong depends_on condition fail."""
    broken = json.loads(json.dumps(raw))
    broken["services"]["redis"]["helthcheck"] = broken["services"]["redis"].pop("healthcheck")
    broken["services"]["airflow-worker"]["depends_on"]["postgres"]["condition"] = "service_ready"
    errors = _errors(validator, broken)
    assert any("helthcheck" in e for e in errors), errors
    assert any("service_ready" in e for e in errors), errors


@pytest.mark.skipif(
    not (shutil.which("docker-compose") or shutil.which("docker")), reason="no Docker Compose binary"
)
def test_docker_compose_config_accepts_it(tmp_path, env):
    """Where a Docker Compose binary exists, it must accept the file too (skipped otherwise)."""
    candidates = [["docker-compose"]] if shutil.which("docker-compose") else []
    candidates += [["docker", "compose"]] if shutil.which("docker") else []
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    for cmd in candidates:
        if subprocess.run([*cmd, "version"], capture_output=True).returncode != 0:
            continue
        clean = {k: v for k, v in os.environ.items() if k not in env}
        result = subprocess.run(
            [*cmd, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--quiet"],
            capture_output=True,
            text=True,
            env=clean,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        return
    pytest.skip("no working Docker Compose (docker-compose, or docker with the compose plugin)")


# --- topology ----------------------------------------------------------------------------------


def test_the_services_of_the_issue_exist(compose):
    assert ISSUE_SERVICES <= set(compose["services"])
    for name, command in AIRFLOW_COMMANDS.items():
        assert compose["services"][name]["command"] == command, name


def test_every_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_dependencies_wait_for_health_or_completion(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), (name, dep)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
    for name in AIRFLOW_COMMANDS:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
    init = services["airflow-init"]
    assert init["restart"] == "no"
    assert set(init["depends_on"]) == {"postgres", "redis"}
    worker = services["airflow-worker"]["depends_on"]
    for dep in ("airflow-apiserver", "seaweedfs", "mailpit"):
        assert worker[dep]["condition"] == "service_healthy"


def test_workers_scale(compose):
    worker = compose["services"]["airflow-worker"]
    assert "container_name" not in worker, "a container_name would stop --scale airflow-worker=N"
    assert not worker.get("ports"), "a fixed host port would stop --scale airflow-worker=N"
    assert "hostname" not in worker
    # no service may have a fixed name, so that two stacks (staging, production) can share a host
    assert not [n for n, s in compose["services"].items() if "container_name" in s]


def _bind_mounts(service: dict) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def _host_path(service: dict, container_path: str) -> Path | None:
    for source, target in _bind_mounts(service):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return ROOT / source / os.path.relpath(container_path, target)
    return None


def test_mounted_paths_exist(compose):
    for name, service in compose["services"].items():
        for source, _target in _bind_mounts(service):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    for name in AIRFLOW_SERVICES:
        targets = dict((t, s) for s, t in _bind_mounts(compose["services"][name]))
        for folder in ("dags", "plugins", "include"):
            assert targets.get(f"/opt/airflow/{folder}") == f"./{folder}", (name, folder)
    named = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert {v for v in named if not v.startswith((".", "/"))} <= set(compose["volumes"])


def test_dev_tools_reach_only_the_demo_seed(raw):
    """devtools/ is not in the image: only airflow-init mounts it, read-only, to seed the demo school
    when DEREG_SEED_DEMO=1."""
    mounts = {
        name: [v for v in service.get("volumes", []) if isinstance(v, str) and v.startswith("./devtools")]
        for name, service in raw["services"].items()
    }
    assert {name for name, found in mounts.items() if found} == {"airflow-init"}
    (volume,) = mounts["airflow-init"]
    _source, target, mode = volume.split(":")
    assert mode == "ro" and target.endswith("/devtools")
    script = (ROOT / "include" / "compose" / "airflow-init.sh").read_text()
    assert f'PYTHONPATH="{target.rsplit("/", 1)[0]}' in script
    assert "python -m devtools.demo.seed" in script


def test_scripts_the_services_run_exist_and_are_executable(compose):
    services = compose["services"]
    scripts = {
        "airflow-init": services["airflow-init"]["command"][-1],
        "seaweedfs": services["seaweedfs"]["entrypoint"][-1],
        "postgres": "/docker-entrypoint-initdb.d/10-dereg.sh",
    }
    for name, container_path in scripts.items():
        host = _host_path(services[name], container_path)
        assert host is not None, f"{name} runs {container_path}, which no bind mount provides"
        assert host.is_file() and os.access(host, os.X_OK), host
    seaweed = _host_path(services["seaweedfs"], "/etc/dereg/seaweedfs-s3.json")
    assert seaweed is not None and seaweed.is_file()


def test_every_variable_is_documented_in_env_example(raw):
    values, comments = parse_env_example()
    used = used_variables(COMPOSE.read_text())
    for path in (ROOT / "include" / "compose").iterdir():  # e.g. the keys of seaweedfs-s3.json
        if path.suffix == ".json":
            used |= used_variables(path.read_text())
    assert used - set(values) == set(), "used in docker-compose.yaml but missing from .env.example"
    assert set(values) - used == set(), "in .env.example but used nowhere"
    for name in values:
        assert len(comments[name]) >= 20, f"{name} is not explained in .env.example"


def test_secrets_have_no_default(raw):
    """A secret left empty stops `docker compose up` (${VAR:?...}) instead of running with a default."""
    text = COMPOSE.read_text()
    values, _ = parse_env_example()
    secrets = [n for n in values if re.search(r"PASSWORD|SECRET|FERNET|ACCESS_KEY", n)]
    assert secrets
    for name in secrets:
        if name in ("DEREG_SMTP_PASSWORD",):  # empty is right for mailpit
            assert f"${{{name}:-}}" in text
            continue
        forms = set(re.findall(r"\$\{" + name + r"(:?[-?])?", text))
        assert forms == {":?"}, f"{name} is used as {forms}, not only as ${{{name}:?...}}"
        assert values[name] == "", f".env.example must not ship a value for {name}"


def test_airflow_configuration(compose):
    services = compose["services"]
    envs = {name: services[name]["environment"] for name in AIRFLOW_SERVICES}
    shared = (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__BROKER_URL",
        "DEREG_STORE_URL",
        "DEREG_KEYRING",
    )
    for key in shared:
        assert len({env[key] for env in envs.values()}) == 1, f"{key} differs between Airflow services"
    assert len({services[n]["image"] for n in AIRFLOW_SERVICES}) == 1
    env = envs["airflow-worker"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert re.match(r"^redis://:[^@]+@redis:6379/\d+$", env["AIRFLOW__CELERY__BROKER_URL"])
    # SQLAlchemy 2.1 resolves a bare postgresql:// to psycopg 3, which is not installed: name psycopg2
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"


def test_metadata_and_compliance_store_are_separate_databases_on_one_server(compose):
    env = compose["services"]["airflow-worker"]["environment"]
    metadata = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    store = env["DEREG_STORE_URL"]
    result = env["AIRFLOW__CELERY__RESULT_BACKEND"]
    pattern = re.compile(r"^[a-z0-9+]+://(?P<user>\w+):[^@]+@(?P<host>[\w-]+):5432/(?P<db>\w+)$")
    m_meta, m_store, m_result = (pattern.match(u) for u in (metadata, store, result))
    assert m_meta and m_store and m_result
    assert m_meta["host"] == m_store["host"] == "postgres"
    assert (m_meta["db"], m_meta["user"]) == ("airflow", "airflow") == (m_result["db"], m_result["user"])
    assert (m_store["db"], m_store["user"]) == ("dereg", "dereg")
    init = (ROOT / "include" / "compose" / "postgres-init.sh").read_text()
    assert set(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", init)) == {
        ("airflow", "airflow"),
        ("dereg", "dereg"),
    }


def test_connections_and_dereg_settings(compose):
    env = compose["services"]["airflow-worker"]["environment"]
    conns = {k: json.loads(v) for k, v in env.items() if k.startswith("AIRFLOW_CONN_")}
    smtp, s3 = conns["AIRFLOW_CONN_DEREG_SMTP"], conns["AIRFLOW_CONN_DEREG_OFFSITE"]
    assert (smtp["conn_type"], smtp["host"], smtp["port"]) == ("smtp", "mailpit", 1025)
    assert s3["conn_type"] == "aws" and s3["extra"]["endpoint_url"] == "http://seaweedfs:8333"
    assert s3["login"] and s3["password"]
    # every company manifest's connections exist (the demo's source and the shared ones)
    for manifest in (ROOT / "include" / "companies").glob("*.yaml"):
        data = yaml.safe_load(manifest.read_text())
        conn_ids = [s["conn_id"] for s in data["sources"]] + [data["backup"]["conn_id"]]
        conn_ids.append(data["notify"]["smtp_conn_id"])
        for conn_id in conn_ids:
            assert f"AIRFLOW_CONN_{conn_id.upper()}" in conns, (manifest.name, conn_id)
    # the folders Dereg reads from its environment (plugins/dereg/config.py) sit on a volume or mount
    mounts = ("/opt/airflow/dereg", "/opt/airflow/include")
    for key in ("DEREG_STATE_DIR", "DEREG_KEYRING", "DEREG_OUTPUT_DIR", "DEREG_COMPANIES_DIR"):
        assert any(env[key].startswith(m + "/") for m in mounts), key
    config_py = (ROOT / "plugins" / "dereg" / "config.py").read_text()
    config_vars = set(re.findall(r'"(DEREG_[A-Z_]+)"', config_py))
    assert len(config_vars) >= 5
    assert config_vars <= set(env), config_vars - set(env)


def test_users_match_the_embedded_stack(compose):
    env = compose["services"]["airflow-apiserver"]["environment"]
    users = dict(u.split(":") for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
    assert users == USERS
    init_env = compose["services"]["airflow-init"]["environment"]
    for user in USERS:
        assert init_env[f"DEREG_{user.upper()}_PASSWORD"], user
    # the api-server and airflow-init share the passwords file
    passwords = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    for name in ("airflow-apiserver", "airflow-init"):
        targets = [v.split(":")[1] for v in compose["services"][name]["volumes"]]
        assert any(passwords.startswith(t + "/") for t in targets), name
    script = (ROOT / "include" / "compose" / "airflow-init.sh").read_text()
    assert "airflow db migrate" in script
    for user, role in USERS.items():
        assert f"[{user}]={role}" in script, user


def test_image_is_built_from_the_pinned_requirements(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM apache/airflow:(\S+)-python3\.11$", dockerfile, re.M)
    assert base, "Dockerfile must start from apache/airflow:<version>-python3.11"
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and pinned[1] == base[1], "the image's Airflow and requirements.txt disagree"
    assert re.search(r"pip install .*-r \S*requirements\.txt -c \S*requirements\.lock", dockerfile)
    for name in AIRFLOW_SERVICES:
        assert compose["services"][name]["build"] in (".", {"context": "."}), name
