"""Reading manifests: from a file or a parsed document to a `Manifest`, or every problem at once.

Checks that need Airflow (does a connection exist?) are in `connection_problems`, run by the
preflight task.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dereg import config
from dereg.errors import ManifestError
from dereg.manifest.models import Manifest
from dereg.manifest.problems import cross_field, from_validation_error


def parse_manifest(data: Any, source: str = "<manifest>") -> Manifest:
    """Validate a parsed YAML document; raise ManifestError listing every problem."""
    try:
        manifest = Manifest.model_validate(data)
        problems = []
    except ValidationError as exc:
        manifest, problems = None, from_validation_error(exc)
    problems += cross_field(data)
    if problems or manifest is None:
        raise ManifestError(source, problems)
    manifest._path = source
    return manifest


#: PyYAML's safe loader in C (libyaml) where the wheel has it: a DAG run parses its manifest dozens
#: of times (every task process, every parse of the DAG file), 2 ms each in pure Python, 0.2 ms so
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate one manifest file."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ManifestError(
            str(path), [f"(document): not valid YAML at {where}: {getattr(exc, 'problem', exc)}"]
        ) from None
    except OSError as exc:
        raise ManifestError(str(path), [f"(document): cannot be read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        # a manifest saved by an editor in GBK: refused as this file's problem, so the DAG factory
        # shows it as a broken DAG instead of failing the whole DAG file (every company's closure)
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ManifestError(
            str(path), [f"(document): not UTF-8 text at line {line}: save the file as UTF-8"]
        ) from None
    return parse_manifest(data, str(path))


def manifest_paths(directory: Path | None = None) -> list[Path]:
    """The manifest files of `directory` (default: the companies folder), sorted."""
    directory = directory or config.companies_dir()
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def company_id_from_path(path: Path) -> str:
    """A DAG-safe id from a manifest file name, used when the manifest itself is unreadable."""
    return re.sub(r"[^a-z0-9_]", "_", path.stem.lower()) or "unnamed"


def connection_problems(manifest: Manifest, exists: Callable[[str], bool]) -> list[str]:
    """Problems with the Airflow connections the manifest names, each with its path."""
    return [
        f"{path}: no such connection {conn_id!r} (create it in Airflow: Admin > Connections, "
        f"or an AIRFLOW_CONN_{conn_id.upper()} environment variable)"
        for path, conn_id in manifest.connection_ids()
        if not exists(conn_id)
    ]
