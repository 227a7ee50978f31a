"""Company manifests: what Dereg cannot infer about a company (connections, retention, approvers).

A manifest is YAML in `include/companies/<id>.yaml`, documented in docs/manifest.md. The models
(`models.py`, pydantic) state every field once; `load_manifest` checks the whole document and
reports every problem at once, each with its path (`sources[1].conn_id: ...`), so an operator
fixes a manifest in one pass (`problems.py` says them in our words). `schema.py` writes the JSON
Schema of the models (docs/manifest.schema.json, `dereg manifest-schema`).
"""

from dereg.manifest.load import (
    company_id_from_path,
    connection_problems,
    load_manifest,
    manifest_paths,
    parse_manifest,
)
from dereg.manifest.models import (
    COPY_DELIVERIES,
    DEFAULT_SMTP_CONN_ID,
    RETAIN_ACTIONS,
    BackupSpec,
    ClassifySpec,
    ColumnOverride,
    Manifest,
    NotifySpec,
    ObjectSourceSpec,
    RetainSpec,
    SourceSpec,
)
from dereg.manifest.problems import allowed_regions

__all__ = [
    "COPY_DELIVERIES",
    "DEFAULT_SMTP_CONN_ID",
    "RETAIN_ACTIONS",
    "BackupSpec",
    "ClassifySpec",
    "ColumnOverride",
    "Manifest",
    "NotifySpec",
    "ObjectSourceSpec",
    "RetainSpec",
    "SourceSpec",
    "allowed_regions",
    "company_id_from_path",
    "connection_problems",
    "load_manifest",
    "manifest_paths",
    "parse_manifest",
]
