"""The JSON Schema of a company manifest, generated from the models.

`docs/manifest.schema.json` is this schema, committed (a test keeps it current; regenerate with
`dereg manifest-schema --out docs/manifest.schema.json`). Editors that read JSON Schema (the YAML
language server) complete and check manifests with it. `field_paths` lists every field as
docs/manifest.md writes it (`sources[].retain[].years`); a test checks the page names them all.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from dereg.manifest.models import Manifest


@lru_cache(maxsize=1)
def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a manifest document."""
    schema = Manifest.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    """The schema as committed in docs/manifest.schema.json."""
    return json.dumps(manifest_schema(), indent=2, ensure_ascii=False) + "\n"


def field_paths(schema: dict[str, Any] | None = None) -> list[str]:
    """Every field of the schema as a path: `a.b` for a mapping's field, `a[]` for a list of
    mappings (and `a[].b` for their fields), in document order."""
    root = schema or manifest_schema()
    paths: list[str] = []

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        return root["$defs"][node["$ref"].rsplit("/", 1)[-1]] if "$ref" in node else node

    def mappings(node: dict[str, Any]) -> list[dict[str, Any]]:
        # the mapping(s) a value may be: itself, or a member of anyOf (optional fields, unions)
        node = resolve(node)
        members = [resolve(m) for m in node.get("anyOf", [node])]
        return [m for m in members if m.get("type") == "object" and "properties" in m]

    def walk(node: dict[str, Any], prefix: str) -> None:
        for mapping in mappings(node):
            for name, sub in mapping["properties"].items():
                path = f"{prefix}{name}"
                items = [resolve(m).get("items") for m in resolve(sub).get("anyOf", [resolve(sub)])]
                listed = [i for i in items if i and mappings(i)]
                if listed:
                    paths.append(f"{path}[]")
                    for item in listed:
                        walk(item, f"{path}[].")
                else:
                    paths.append(path)
                    walk(sub, f"{path}.")

    walk(root, "")
    return list(dict.fromkeys(paths))
