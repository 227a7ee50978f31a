"""The `notify_customers` stage over every source of a manifest: what each source's notice says
(categories of personal data held, records kept by law, erase date, answer link) and to whom it
goes; delivery, exactly once per address, is `dereg.notify.deliver.send_notices`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dereg.classify.taxonomy import load_taxonomy
from dereg.connectors import Connectors
from dereg.evidence.run_artifacts import RunArtifacts
from dereg.model import ClassificationResult
from dereg.notify.answers import answer_links
from dereg.notify.deliver import send_notices
from dereg.notify.recipients import recipients_of
from dereg.notify.render import NoticeContext


def notice_context(
    manifest, source, classification: ClassificationResult, *, erase_date: dt.date, answer_link, taxonomy=None
) -> NoticeContext:
    """What the notices of `source` say: the categories its classification found (as named in the
    taxonomy), the tables kept by law with their law and period, the date erasure may start."""
    taxonomy = taxonomy if taxonomy is not None else load_taxonomy()
    categories = sorted({cat for c in classification.columns for cat in c.categories if cat in taxonomy})
    return NoticeContext(
        answer_link=answer_link,
        company_name_zh=manifest.name_zh,
        company_name_en=manifest.name_en,
        sender=manifest.sender,
        reply_to=manifest.reply_to,
        categories=[(taxonomy[c].zh, taxonomy[c].en) for c in categories],
        kept=[f"{r.table}: {r.law}, {r.years} 年 / years" for r in source.retain],
        erase_date=erase_date,
        response_deadline=erase_date,
        complaint=manifest.complaint,
    )


def notify_customers(
    manifest,
    artifacts: RunArtifacts,
    *,
    connectors: Connectors,
    pseudonym_key: bytes,
    notice_window_days: int,
    dry_run: bool,
    log,
    progress,
) -> dict[str, Any]:
    """Send one notice per reachable address of every source that names notice recipients (none in
    a dry run, which still records what it would send); returns each source's delivery report."""
    taxonomy = load_taxonomy()
    erase_date = dt.date.today() + dt.timedelta(days=notice_window_days)
    link = answer_links(manifest, artifacts.run_id, pseudonym_key, erase_date)
    reports = {}
    for source in manifest.sources:
        if not source.reaches_customers:
            # preflight refuses a real run without `notify`; say so in a dry run, and record it
            why = source.notify.reason if source.notify else None
            if why:
                log.info("Source %s: no customer can be reached (notify: none): %s", source.id, why)
            else:
                log.warning(
                    "Source %s: the manifest names no way to reach its customers (sources[].notify); "
                    "0 notices. A real run refuses this: see docs/manifest.md",
                    source.id,
                )
            reports[source.id] = {
                "reachable": 0,
                "unreachable": 0,
                "none": why or "sources[].notify is missing",
            }
            continue
        ctx = notice_context(
            manifest,
            source,
            artifacts.classification(source.id),
            erase_date=erase_date,
            answer_link=link,
            taxonomy=taxonomy,
        )
        with connectors.database(source.conn_id) as engine:
            recipients = recipients_of(engine, source)
        log.info(
            "Source %s: %d reachable address(es), %d contact(s) without a usable address (from %s.%s)",
            source.id,
            len(recipients.reachable),
            len(recipients.unreachable),
            source.notify_table,
            source.notify.email_column,
        )
        if not recipients.reachable:
            log.warning(
                "Source %s: no customer can be reached at %s.%s",
                source.id,
                source.notify_table,
                source.notify.email_column,
            )
        report = send_notices(
            recipients,
            smtp_conn_id=manifest.smtp_conn_id,
            ctx=ctx,
            store=artifacts.store,
            pseudonym_key=pseudonym_key,
            company_id=manifest.company_id,
            run_id=artifacts.run_id,
            dry_run=dry_run,
            progress=progress,
            rate_per_minute=manifest.rate_per_minute,
        )
        reports[source.id] = report.to_dict()
        log.info("Notices for %s: %s", source.id, report.to_dict())
    return {"sources": reports, "erase_after": erase_date.isoformat()}
