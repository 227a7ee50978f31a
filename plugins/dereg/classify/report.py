"""The classification report, as JSON and as a readable HTML page.

Per column (or, for object stores, per folder and file type): categories with their display names,
level, how many values were read, how many matched and the ratio, masked examples and the reason;
per table its row count and any problem; per source the minors. Never a raw value: everything here
comes from findings, which hold masked examples only.

`report_classification` is the `classification_report` stage: it merges the parts the mapped
`classify` task wrote (`merge_parts`), counts minors, applies the manifest's overrides, stores each
source's classification and writes the report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dereg.classify.engine import apply_overrides, count_minors
from dereg.classify.taxonomy import load_taxonomy
from dereg.errors import DeregError
from dereg.model import ClassificationResult

if TYPE_CHECKING:  # names in annotations only: `dereg scan` imports this module after its scan
    from dereg.connectors import Connectors
    from dereg.evidence.run_artifacts import RunArtifacts


def source_report(result: ClassificationResult, inventory: Any = None, *, source: str | None = None) -> dict:
    """The report of one source: every column, personal or not, and the tables' row counts."""
    taxonomy = load_taxonomy()
    columns = []
    for f in result.columns:
        columns.append(
            {
                "table": f.table,
                "column": f.column,
                "type": f.type,
                "categories": list(f.categories),
                "category_names": [
                    {"id": c, "zh": taxonomy[c].zh, "en": taxonomy[c].en} if c in taxonomy else {"id": c}
                    for c in f.categories
                ],
                "level": f.level,
                "values_checked": f.values_checked,
                "matches": f.matches,
                "match_ratio": f.match_ratio,
                "masked_examples": list(f.masked_examples),
                "reason": f.reason,
                "override": f.override,
            }
        )
    tables = []
    for t in getattr(inventory, "tables", None) or []:
        tables.append(
            {"table": t.qualified_name, "rows": t.row_count, "columns": len(t.columns), "problem": t.problem}
        )
    for g in getattr(inventory, "groups", None) or []:
        tables.append(
            {"table": f"{g.folder or '(prefix root)'}/*{g.kind}", "objects": g.objects, "bytes": g.bytes}
        )
    personal = [c for c in columns if c["categories"]]
    return {
        "source_id": result.source_id,
        "source": source,
        "mode": result.mode,
        "sample_size": result.sample_size,
        "columns": columns,
        "tables": tables,
        "problems": list(result.problems),
        "minors": result.minors,
        "subjects": result.subjects,
        "summary": {
            "columns": len(columns),
            "personal_columns": len(personal),
            "sensitive_columns": sum(1 for c in personal if c["level"] == "sensitive"),
            "categories": sorted({cat for c in personal for cat in c["categories"]}),
            "overrides": sum(1 for c in columns if c["override"]),
        },
    }


def company_report(company_id: str, name: str, run_id: str, sources: list[dict]) -> dict:
    return {
        "company_id": company_id,
        "company": name,
        "run_id": run_id,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sources": sources,
        "minors": sum(s["minors"] for s in sources),
        "subjects": sum(s["subjects"] for s in sources),
    }


_CSS = """
body{font-family:system-ui,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:2em;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f7} tr.sensitive td{background:#fff1f0} tr.general td{background:#fffbe6}
tr.none td{color:#777} .reason{font-size:12px;color:#555} code{font-size:12px}
.problem{color:#a8071a}
"""


def render_html(report: dict) -> str:
    """A readable page of a source report or of a company report (several sources)."""
    sources = report.get("sources") or [report]
    title = f"Classification report / 分类报告 — {report.get('company') or sources[0].get('source_id')}"
    out = [
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if report.get("run_id"):
        out.append(
            f"<p>Run <code>{html.escape(report['run_id'])}</code>, generated {html.escape(report['generated_at'])}</p>"
        )
    for s in sources:
        summary = s["summary"]
        out.append(f"<h2>{html.escape(s['source_id'])}</h2>")
        out.append(
            "<p>"
            + html.escape(
                f"{summary['personal_columns']} of {summary['columns']} columns hold personal information "
                f"({summary['sensitive_columns']} sensitive); {s['minors']} of {s['subjects']} subjects are "
                f"under 14; mode {s['mode']}"
                + (f", sample of up to {s['sample_size']:,} rows per table" if s["mode"] == "sample" else "")
                + (f"; {summary['overrides']} manifest override(s)" if summary["overrides"] else "")
            )
            + "</p>"
        )
        if s["problems"]:
            out.append("<h3>Problems / 问题</h3><ul>")
            out += [
                f"<li class='problem'>{html.escape(p['table'])}: {html.escape(p['reason'])}</li>"
                for p in s["problems"]
            ]
            out.append("</ul>")
        out.append(
            "<table><tr><th>Table / 表</th><th>Column / 列</th><th>Categories / 类别</th><th>Level / 级别</th>"
            "<th>Matched / 命中</th><th>Examples (masked) / 示例（已脱敏）</th><th>Why / 依据</th></tr>"
        )
        for c in s["columns"]:
            names = (
                ", ".join(f"{n.get('zh', n['id'])} / {n.get('en', n['id'])}" for n in c["category_names"])
                or "—"
            )
            level = c["level"] or "none"
            ratio = f"{c['matches']:,} / {c['values_checked']:,} ({c['match_ratio']:.0%})"
            why = c["reason"] + (f" [override: {c['override']}]" if c["override"] else "")
            out.append(
                f"<tr class='{level}'><td>{html.escape(c['table'])}</td><td>{html.escape(c['column'])}</td>"
                f"<td>{html.escape(names)}</td><td>{html.escape(level)}</td><td>{ratio}</td>"
                f"<td><code>{html.escape(', '.join(c['masked_examples']))}</code></td>"
                f"<td class='reason'>{html.escape(why)}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(report: dict, json_path: Path | None = None, html_path: Path | None = None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(report), encoding="utf-8")


# ---- the classification_report stage -----------------------------------------------------------


def merge_parts(source_id: str, parts: list[ClassificationResult]) -> ClassificationResult:
    """The classification of a whole source from the parts its units produced, in unit order."""
    return ClassificationResult(
        source_id=source_id,
        columns=[c for p in parts for c in p.columns],
        mode=parts[0].mode,
        sample_size=parts[0].sample_size,
        problems=[x for p in parts for x in p.problems],
    )


def _parts(artifacts: RunArtifacts, units: list[dict]) -> list[ClassificationResult]:
    parts = []
    for unit in units:
        try:
            parts.append(artifacts.classification_part(unit["source"], unit["index"]))
        except DeregError:
            raise DeregError(
                f"classification of {unit['label']} is missing for run {artifacts.run_id}; clear and re-run "
                f"its classify task (map index {unit['index']})"
            ) from None
    return parts


def _finish_sql_source(result: ClassificationResult, inventory, source, engine, closure_date: dt.date):
    """Count minors and apply the manifest's overrides; returns (overrides applied, required tables
    that could not be classified)."""
    count_minors(engine, inventory, result, source.subject_table, closure_date)
    unmatched = apply_overrides(result, source.classify.overrides)
    if unmatched:
        raise DeregError(
            f"sources[{source.id}].classify.overrides name column(s) that do not exist: "
            f"{', '.join(unmatched)}; fix the manifest (table and column as in the report)"
        )
    overrides = [
        {
            "source": source.id,
            "table": o.table,
            "column": o.column,
            "categories": o.categories,
            "reason": o.reason,
        }
        for o in source.classify.overrides
    ]
    required = set(source.required_tables)
    failures = [
        f"{source.id}.{p['table']}: {p['reason']}"
        for p in result.problems
        if p["table"] in required or p["table"].split(".")[-1] in required
    ]
    return overrides, failures


def report_classification(
    manifest, artifacts: RunArtifacts, *, connectors: Connectors, output_dir: Path, log
) -> dict[str, Any]:
    """Merge every source's units, count minors, apply overrides, store each source's classification
    and write `classification.json` and `.html` in `output_dir`. Fails when a table the manifest
    requires could not be classified (after writing the report, which lists why)."""
    units = artifacts.units()
    reports, summary, failures, overrides = [], {}, [], []
    for sid in dict.fromkeys(u["source"] for u in units):
        mine = [u for u in units if u["source"] == sid]
        result = merge_parts(sid, _parts(artifacts, mine))
        if any(u["kind"] == "objects" for u in mine):
            inventory = artifacts.object_inventory(sid)
        else:
            source = manifest.source(sid)
            inventory = artifacts.inventory(sid)
            with connectors.database(source.conn_id) as engine:
                applied, failed = _finish_sql_source(result, inventory, source, engine, manifest.closure_date)
            overrides += applied
            failures += failed
        digest = artifacts.put_classification(sid, result)
        report = source_report(result, inventory)
        reports.append(report)
        s = report["summary"]
        log.info(
            "Classified %s: %d personal columns (%d sensitive), %d of %d subjects are minors, %d problem(s)",
            sid,
            s["personal_columns"],
            s["sensitive_columns"],
            result.minors,
            result.subjects,
            len(result.problems),
        )
        summary[sid] = {
            "columns": s["columns"],
            "personal_columns": s["personal_columns"],
            "sensitive_columns": s["sensitive_columns"],
            "subjects": result.subjects,
            "minors": result.minors,
            "table_problems": len(result.problems),
            "artifact_sha256": digest,
        }
    full = company_report(
        manifest.company_id, f"{manifest.name_zh} / {manifest.name_en}", artifacts.run_id, reports
    )
    json_path = output_dir / "classification.json"
    write_report(full, json_path, output_dir / "classification.html")
    log.info("Classification report: %s (and .html)", json_path)
    if failures:
        raise DeregError(
            f"classification of company {manifest.company_id} could not read {len(failures)} required table(s):\n"
            + "\n".join(f"  - {f}" for f in failures)
            + "\nGrant the connection's user read access (or fix the connection) and clear this run's "
            "classify tasks; the manifest's required tables are sources[].subject_table, notify.table "
            "and classify.required_tables"
        )
    return {
        "sources": summary,
        "overrides": overrides,
        "report": str(json_path),
        "report_sha256": hashlib.sha256(json_path.read_bytes()).hexdigest(),
    }
