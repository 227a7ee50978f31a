"""The erasure plan as its approver reads it: the per-run `plan.html` and the approval request's text.

Per source and table: the rows to delete, pseudonymize and keep out of the table's rows, the link
that ties the table to the subjects (declared, inferred with its evidence, or the manifest's), the
partition a table is, and the personal data nobody has decided on yet; then the plan hash the
approver approves. Built from the plan's fields only (names, counts, evidence): no personal value.
The page is rendered with Jinja from `include/templates/plan.html.j2`, autoescaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dereg.erase.plan import ErasurePlan, TableAction

PLAN_PAGE = "plan.html"
TEMPLATE = "plan.html.j2"
ACTION_LABELS = {"delete": "删除 / delete", "pseudonymize": "假名化 / pseudonymize", "keep": "保留 / keep"}
KIND_LABELS = {"declared": "外键 / declared", "inferred": "推断 / inferred", "manifest": "清单 / manifest"}


def evidence_text(evidence: Mapping[str, Any]) -> str:
    """An inferred link's evidence in words: rule, values matched, containment (names and counts)."""
    if not evidence:
        return ""
    parts = []
    if evidence.get("rule"):
        parts.append(f"rule {evidence['rule']}")
    if "matched" in evidence or "non_null" in evidence:
        parts.append(f"{evidence.get('matched', '?')} of {evidence.get('non_null', '?')} values are keys")
    if evidence.get("containment") is not None:
        parts.append(f"containment {evidence['containment']}")
    if evidence.get("reason"):
        parts.append(f"reason: {evidence['reason']}")
    if evidence.get("constraint"):
        parts.append(f"constraint {evidence['constraint']}")
    shown = {"rule", "matched", "non_null", "containment", "reason", "constraint"}
    parts += [f"{k} {v}" for k, v in sorted(evidence.items()) if k not in shown]
    return "; ".join(parts)


def _rows(action: TableAction) -> dict[str, int]:
    """Rows deleted, pseudonymized and left as they are, out of the table's rows."""
    total = action.rows_total or action.rows
    acted = min(action.rows, total) if total else action.rows
    return {
        "delete": acted if action.action == "delete" else 0,
        "pseudonymize": acted if action.action == "pseudonymize" else 0,
        "keep": total - acted if action.action != "keep" else total,
        "total": total,
    }


def _links(plan: ErasurePlan, action: TableAction) -> list[dict[str, str]]:
    if action.table == plan.subject_table:
        return [{"kind": "subjects", "label": "数据主体 / the subjects", "link": "", "evidence": ""}]
    shown = [
        {
            "kind": link.get("kind", ""),
            "label": KIND_LABELS.get(link.get("kind", ""), link.get("kind", "")),
            "link": link.get("link", ""),
            "evidence": evidence_text(link.get("evidence") or {}),
        }
        for link in action.links
    ]
    if not shown and action.via:  # a plan that names its hops but not the links: the hops alone
        hops = " -> ".join(
            f"{action.table if i == 0 else action.via[i - 1]['table']}({', '.join(h.get('columns', []))}) -> "
            f"{h.get('table')}({', '.join(h.get('ref_columns', []))})"
            for i, h in enumerate(action.via)
        )
        shown.append({"kind": "", "label": "", "link": hops, "evidence": ""})
    return shown


def table_view(plan: ErasurePlan, action: TableAction) -> dict[str, Any]:
    return {
        "table": action.table,
        "action": action.action,
        "action_label": ACTION_LABELS.get(action.action, action.action),
        "scope": action.scope,
        "rows": _rows(action),
        "columns": list(action.columns),
        "links": _links(plan, action),
        "partition_of": action.partition_of,
        "reason": action.reason,
    }


def inferred_links(plan: ErasurePlan) -> list[dict[str, Any]]:
    """The inferred links the plan relies on: {"table", "link", "evidence"} (names and counts)."""
    return [
        {"table": a.table, "link": link.get("link", ""), "evidence": dict(link.get("evidence") or {})}
        for a in plan.tables
        for link in a.links
        if link.get("kind") == "inferred"
    ]


def source_view(plan: ErasurePlan) -> dict[str, Any]:
    order = {"delete": 0, "pseudonymize": 1, "keep": 2}
    tables = [
        table_view(plan, a) for a in sorted(plan.tables, key=lambda a: (order.get(a.action, 3), a.table))
    ]
    acted = [t for t in tables if t["action"] != "keep"]
    return {
        "source_id": plan.source_id,
        "dialect": plan.dialect,
        "subject_table": plan.subject_table,
        "plan_hash": plan.plan_hash,
        "acted": acted,
        "kept": [t for t in tables if t["action"] == "keep"],
        "undecided": [
            {
                "table": u.get("table", ""),
                "rows": u.get("rows"),
                "columns": {c: list(cats or []) for c, cats in (u.get("columns") or {}).items()},
            }
            for u in plan.undecided
        ],
        "inferred": len(inferred_links(plan)),
        "totals": {k: sum(t["rows"][k] for t in acted) for k in ("delete", "pseudonymize")},
    }


def _object_view(source_id: str, plan: Any) -> dict[str, Any]:
    summary = plan.summary()
    return {
        "source_id": source_id,
        "location": f"s3://{getattr(plan, 'bucket', '')}/{getattr(plan, 'prefix', '')}",
        "action_label": ACTION_LABELS.get(summary.get("action", ""), summary.get("action", "")),
        "objects": summary.get("objects", 0),
        "bytes": summary.get("bytes", 0),
        "personal_groups": summary.get("personal_groups", 0),
        "plan_hash": summary.get("plan_hash", ""),
    }


def render_plan_html(
    plans: Mapping[str, Any],
    *,
    company_id: str,
    name_zh: str,
    name_en: str,
    run_id: str,
    plan_hash: str,
    dry_run: bool = False,
    templates: Path | None = None,
) -> str:
    """The plan page of one run: every SQL source's tables and undecided data, every object source."""
    import jinja2

    from dereg import config

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates or config.templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    sources = [source_view(p) for p in plans.values() if isinstance(p, ErasurePlan)]
    objects = [_object_view(sid, p) for sid, p in plans.items() if not isinstance(p, ErasurePlan)]
    return env.get_template(TEMPLATE).render(
        company_id=company_id,
        name_zh=name_zh,
        name_en=name_en,
        run_id=run_id,
        plan_hash=plan_hash,
        dry_run=dry_run,
        sources=sources,
        objects=objects,
    )


def write_plan_html(out_dir: Path, plans: Mapping[str, Any], **fields: Any) -> Path:
    """Write `plan.html` into the run's output folder; returns its path."""
    path = Path(out_dir) / PLAN_PAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_plan_html(plans, **fields), encoding="utf-8")
    return path


def approval_lines(plans: Mapping[str, Any], page: Path | str | None = None) -> list[str]:
    """What the approval request says of the plan (Markdown): per source its totals, inferred links
    and undecided items, then each table acted on with its counts; and where the whole page is."""
    lines: list[str] = []
    for source_id, plan in plans.items():
        if not isinstance(plan, ErasurePlan):
            o = _object_view(source_id, plan)
            lines.append(
                f"- **{source_id}** ({o['location']}): {o['action_label']} {o['objects']} objects "
                f"({o['bytes']} bytes), {o['personal_groups']} folder/type group(s) with personal data"
            )
            continue
        view = source_view(plan)
        lines.append(
            f"- **{source_id}** (subjects / 数据主体: `{plan.subject_table}`): 删除 delete "
            f"{view['totals']['delete']} rows, 假名化 pseudonymize {view['totals']['pseudonymize']} rows, "
            f"{len(view['kept'])} table(s) kept / 保留; {view['inferred']} inferred link(s) / 推断关联; "
            f"{len(view['undecided'])} undecided table(s) / 待决定"
        )
        for t in view["acted"]:
            r = t["rows"]
            done = r["delete"] or r["pseudonymize"]
            how = (
                " via " + "; ".join(f"{link['link']} ({link['kind']})" for link in t["links"] if link["link"])
                if any(link["link"] for link in t["links"])
                else ""
            )
            part = f", partition of `{t['partition_of']}`" if t["partition_of"] else ""
            why = f": {t['reason']}" if t["reason"] else ""
            lines.append(f"  - `{t['table']}`: {t['action']} {done} of {r['total']} rows{part}{how}{why}")
        for u in view["undecided"]:
            lines.append(
                f"  - UNDECIDED / 待决定 `{u['table']}`: personal columns {', '.join(u['columns'])} "
                "(decide with the source's `decisions:` or `classify.overrides` in the manifest)"
            )
    if page:
        lines += ["", f"The whole plan / 完整计划: `{page}`"]
    return lines
