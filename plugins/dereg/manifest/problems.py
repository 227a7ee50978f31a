"""A manifest's problems in our words, each with its path (`sources[1].conn_id: is required`).

`from_validation_error` turns pydantic's errors into the lines an operator reads; `cross_field`
finds the problems that span fields (unique source ids, the backup region, an override's
categories or `personal`). The latter reads the raw document, so that it reports even when
another field is wrong and every problem still comes out in one pass.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import ValidationError

from dereg import config
from dereg.manifest.models import HINTS

APPROVERS = (
    "must be a non-empty list of Airflow user names (or {name, id} pairs where the auth manager's "
    "user id is not the name, as with FAB)"
)
#: generic path ([] for any index) -> the message for a missing, non-list or empty list
_LISTS = {
    "approval.approvers": APPROVERS,
    "sources": "must be a non-empty list of data sources",
    "sources[].classify.required_tables": "must be a list of table names",
    "sources[].classify.overrides[].categories": "must be a non-empty list of taxonomy ids (or set "
    "personal: false)",
}
#: generic path -> what follows a field's "must be one of ..." problem
_CHOICES = {
    "notify.copy_delivery": " (link: an expiring download link is e-mailed; attachment: the ZIP is "
    "attached, with the link as fallback for large copies)",
}
_REQUIRED = {"closure_date": "is required (YYYY-MM-DD)"}


def path_of(loc: tuple[str | int, ...]) -> str:
    """`('sources', 1, 'conn_id')` as `sources[1].conn_id`; the whole document as `(document)`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(document)"


def _message(error: dict[str, Any]) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    generic = re.sub(r"\[\d+\]", "[]", path_of(error["loc"]))
    if kind == "dereg":  # raised by a validator in models.py, already in our words
        return str(ctx["message"])
    if kind in ("missing", "list_type", "too_short") and generic in _LISTS:
        return _LISTS[generic]
    if kind == "missing" or (value is None and kind.endswith("_type")):
        return _REQUIRED.get(generic, "is required")
    if kind == "extra_forbidden":
        return "is not a known field (see docs/manifest.md)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping, got {type(value).__name__}"
    if kind == "string_type":
        return f"must be text, got {type(value).__name__}"
    if kind.startswith("int_"):
        return f"must be a whole number, got {value!r}"
    if kind.startswith("bool_"):
        return f"must be true or false, got {value!r}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {value}"
    if kind == "string_pattern_mismatch":
        hint = HINTS.get(ctx["pattern"])
        return f"{value!r} is not valid" + (f": {hint}" if hint else f" (pattern {ctx['pattern']})")
    if kind == "literal_error":
        choices = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
        return f"must be one of {choices}, got {value!r}{_CHOICES.get(generic, '')}"
    if kind == "list_type":
        return "must be a list"
    if kind == "too_short":
        return "must not be empty"
    if kind.startswith("date_"):
        return f"{value!r} is not a date (YYYY-MM-DD)"
    return str(error["msg"])  # pydantic's own words, for anything the manifest cannot hit today


def from_validation_error(error: ValidationError) -> list[str]:
    """Every error of a failed `Manifest.model_validate`, as `path: message` lines. A missing
    mapping brings the lines of its own required fields, so that one pass shows all to write."""
    lines = []
    for e in error.errors():
        lines.append(f"{path_of(e['loc'])}: {_message(e)}")
        if e["type"] == "missing" or (e.get("input") is None and e["type"] in ("model_type", "dict_type")):
            lines += _required_within(e["loc"])
    return lines


def _required_within(loc: tuple[str | int, ...]) -> list[str]:
    """`path: is required` for each required field under the mapping at `loc` (none if not one)."""
    from dereg.manifest.schema import manifest_schema

    root = manifest_schema()
    node = root
    for part in loc:
        node = _resolve(root, node)
        node = node.get("items", {}) if isinstance(part, int) else node.get("properties", {}).get(part, {})
    node = _resolve(root, node)
    lines = []
    for name in node.get("required", []):
        sub = (*loc, name)
        lines.append(f"{path_of(sub)}: {_message({'type': 'missing', 'loc': sub})}")
        lines += _required_within(sub)
    return lines


def _resolve(root: dict, node: dict) -> dict:
    if "$ref" in node:
        return root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def allowed_regions() -> list[str]:
    """Backup regions that need no cross-border assessment (include/policy/regions.yaml)."""
    data = yaml.safe_load((config.policy_dir() / "regions.yaml").read_text(encoding="utf-8"))
    return list(data["allowed_regions"])


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _items(value: Any) -> list[tuple[int, dict]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def cross_field(data: Any) -> list[str]:
    """The problems no single field shows, read from the raw document (whatever else is wrong)."""
    if not isinstance(data, dict):
        return []
    problems: list[str] = []
    seen: set[str] = set()
    for key in ("sources", "object_sources"):
        for i, source in _items(data.get(key)):
            sid = _text(source.get("id"))
            if sid and sid in seen:
                problems.append(f"{key}[{i}].id: {sid!r} is used by an earlier source")
            seen.add(sid)
            classify = source.get("classify") if key == "sources" else None
            if isinstance(classify, dict):
                problems += _override_problems(classify.get("overrides"), f"{key}[{i}].classify")
            if key == "sources":
                problems += _link_problems(source.get("links"), f"{key}[{i}]")
                problems += _notify_problems(
                    source.get("notify"), _text(source.get("subject_table")), f"{key}[{i}]"
                )
    backup = data.get("backup")
    if isinstance(backup, dict):
        region = _text(backup.get("region"))
        if region and region not in allowed_regions() and not _text(backup.get("cross_border_assessment")):
            problems.append(
                f"backup.region: {region!r} is outside the allowed regions {allowed_regions()} "
                "(include/policy/regions.yaml); a cross-border transfer needs backup.cross_border_assessment "
                "with the reference of its security assessment"
            )
    return problems


def _override_problems(overrides: Any, path: str) -> list[str]:
    """An override gives non-empty categories, or `personal: false`; never both, never neither."""
    problems = []
    for j, override in _items(overrides):
        opath = f"{path}.overrides[{j}]"
        categories = override.get("categories")
        if override.get("personal", True) is False:
            if categories:
                problems.append(f"{opath}: give either categories or personal: false, not both")
        elif categories is None or categories == []:
            problems.append(
                f"{opath}.categories: must be a non-empty list of taxonomy ids (or set personal: false)"
            )
    return problems


def _link_problems(links: Any, path: str) -> list[str]:
    """A link the manifest adds names what it references; a rejected one needs no reference."""
    problems = []
    for j, link in _items(links):
        lpath = f"{path}.links[{j}]"
        if link.get("reject", False) is True:
            continue
        if not _text(link.get("references")):
            problems.append(
                f"{lpath}.references: is required (the table that {_text(link.get('table')) or 'the table'}"
                "'s columns refer to), unless the link is rejected with reject: true"
            )
    return problems


#: how to write each shape of `sources[].notify`, for the problems that need it
NOTIFY_SHAPES = (
    "email_column and name_column of the subject table; or table with link_column (a column of the "
    "subject table holding table's key: guardians); or table with subject_column (a column of table "
    "holding the subject's key: a profile table); or none: true with a reason (see docs/manifest.md)"
)


def _notify_problems(notify: Any, subject_table: str, path: str) -> list[str]:
    """`notify` is one of its shapes (NotifySpec): the columns that reach the customers, or
    `none: true` with a reason; a table other than the subject table says how it reaches them."""
    if not isinstance(notify, dict):
        return []
    npath = f"{path}.notify"
    given = [
        k
        for k in ("table", "email_column", "name_column", "link_column", "key_column", "subject_column")
        if _text(notify.get(k))
    ]
    if notify.get("none", False) is True:
        problems = []
        if given:
            problems.append(
                f"{npath}: none: true says no customer can be reached, yet {', '.join(given)} "
                "name(s) how to reach them; keep one or the other"
            )
        if not _text(notify.get("reason")):
            problems.append(
                f"{npath}.reason: is required with none: true (why no customer of this source can be reached)"
            )
        return problems
    problems = []
    if _text(notify.get("reason")):
        problems.append(f"{npath}.reason: is only for none: true; remove it, or set none: true")
    for column, what in (("email_column", "e-mail addresses"), ("name_column", "names")):
        if not _text(notify.get(column)):
            problems.append(
                f"{npath}.{column}: is required (the column holding the recipients' {what}); {NOTIFY_SHAPES}"
            )
    table = _text(notify.get("table"))
    link, back = _text(notify.get("link_column")), _text(notify.get("subject_column"))
    if link and back:
        problems.append(
            f"{npath}: give link_column (the subject table refers to {table or 'the table'}) or "
            f"subject_column ({table or 'the table'} refers to the subject table), not both"
        )
    if _text(notify.get("key_column")) and not link:
        problems.append(f"{npath}.key_column: only goes with link_column (the column link_column refers to)")
    if (link or back) and not table:
        problems.append(
            f"{npath}.table: is required with {'link_column' if link else 'subject_column'} (the table "
            "holding the addresses); without table, email_column and name_column are the subject table's"
        )
    if table and table != subject_table and not (link or back):
        problems.append(
            f"{npath}: table {table} is not the subject table {subject_table or '(not given)'}: say how its "
            f"rows reach the subjects, with link_column (a column of {subject_table or 'the subject table'} "
            f"holding {table}'s key, e.g. guardians) or subject_column (a column of {table} holding the "
            "subject's key, e.g. a profile table); or leave table out to use the subject table's columns"
        )
    return problems
