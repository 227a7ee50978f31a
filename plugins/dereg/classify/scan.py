"""One-shot scan of a source by URL, without Airflow: what `dereg scan` runs.

A SQLAlchemy URL is inventoried (every user schema) and classified; an `s3://BUCKET/PREFIX` URL is
listed and its text objects read, with the endpoint and keys from the standard AWS environment
variables. The result is a source report (`dereg.classify.report.source_report`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from dereg import connections
from dereg.classify import parallel
from dereg.classify.engine import DEFAULT_SAMPLE_SIZE, classify_source
from dereg.errors import DeregError, SourceError


def display_url(url: str) -> str:
    """The URL without its password."""
    if url.startswith("s3://"):
        return url
    return connections.display_url(url)


def scan_url(
    url: str,
    *,
    full: bool = False,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    subject_table: str | None = None,
    closure_date: dt.date | None = None,
    source_id: str = "scan",
    progress: Callable[[str], None] | None = None,
) -> dict:
    closure_date = closure_date or dt.date.today()
    if url.startswith("s3://"):
        return _scan_s3(url, full=full, source_id=source_id, progress=progress)
    try:
        engine = connections.database_engine(url, what="SOURCE_URL")
    except connections.ConnectionProblem as exc:
        raise DeregError(f"{exc}, or s3://BUCKET/PREFIX") from None
    try:
        from dereg.inventory.sql import inventory_source

        if full:  # a large source's worker processes start while it is inventoried
            parallel.start_early(engine, "dereg.classify.engine")
        inventory = inventory_source(engine, source_id)
        if progress:
            progress(
                f"inventory: {len(inventory.tables)} tables, {sum(t.row_count for t in inventory.tables):,} rows"
            )
        if subject_table is not None and not any(
            subject_table in (t.name, t.qualified_name) for t in inventory.tables
        ):
            raise SourceError(
                f"--subject-table {subject_table}: no such table in {display_url(url)}; tables: "
                + ", ".join(t.qualified_name for t in inventory.tables[:20])
            )
        result = classify_source(
            engine,
            inventory,
            sample_size=sample_size,
            closure_date=closure_date,
            subject_table=subject_table,
            full=full,
            progress=progress,
            minors_everywhere=True,
        )
    finally:
        parallel.stop_early(engine)
        engine.dispose()
    from dereg.classify.report import source_report  # not before: a full scan's workers start sooner

    return source_report(result, inventory, source=display_url(url))


def _scan_s3(url: str, *, full: bool, source_id: str, progress) -> dict:
    from dereg.classify.objects import classify_objects, inventory_objects

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise DeregError(f"{url!r} names no bucket; use s3://BUCKET/PREFIX")
    client = connections.s3_location_from_env(f"s3://{bucket}").client()
    inventory = inventory_objects(client, source_id, bucket, prefix.strip("/"))
    if progress:
        progress(
            f"inventory: {inventory.objects:,} objects, {inventory.bytes:,} bytes in {len(inventory.groups)} groups"
        )
    result = classify_objects(client, inventory, full=full, progress=progress)
    from dereg.classify.report import source_report

    return source_report(result, inventory, source=url)


def print_summary(report: dict) -> None:
    """The personal columns, minors and problems, one line each (masked examples only)."""
    for c in report["columns"]:
        if not c["categories"]:
            continue
        examples = ", ".join(c["masked_examples"])
        print(
            f"{c['table']}.{c['column']}: {','.join(c['categories'])} ({c['level']}) "
            f"{c['matches']}/{c['values_checked']} {examples}"
        )
    s = report["summary"]
    print(
        f"{s['personal_columns']} of {s['columns']} columns personal ({s['sensitive_columns']} sensitive); "
        f"{report['minors']} of {report['subjects']} subjects are minors; mode {report['mode']}"
    )
    for p in report["problems"]:
        print(f"PROBLEM {p['table']}: {p['reason']}")
