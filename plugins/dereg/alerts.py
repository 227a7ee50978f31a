"""E-mail the company's operations address when a closure task fails for good.

Installed as every closure task's `on_failure_callback` (Airflow calls it once the last retry has
failed, in the worker that ran the task). The message names the company, the DAG run, the task and
its try, the kind of error, and links to the task's log in the Airflow UI (`[api] base_url`). The
error text goes through `redact`: Dereg's own messages carry counts and references only, but a
driver's message could quote a value.

An alert that cannot be sent (no SMTP connection, server down) is logged and never hides the task's
own failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid

from dereg.redact import redact

log = logging.getLogger(__name__)

SENDER = "dereg@localhost"


def failure_message(
    *,
    company_id: str,
    company_name: str,
    to: str,
    dag_id: str,
    run_id: str,
    task_label: str,
    try_number: int | None,
    error: BaseException | None,
    log_url: str,
    sender: str = SENDER,
) -> EmailMessage:
    """The alert for one failed task (no personal data: ids, names of stages, a redacted error)."""
    kind = type(error).__name__ if error is not None else "unknown error"
    text = redact(str(error))[:1500] if error is not None else "(no error was passed to the callback)"
    message = EmailMessage()
    message["Subject"] = f"[Dereg] {company_id}: task {task_label} FAILED (run {run_id})"
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    message.set_content(
        "\n".join(
            [
                "A closure task failed after its last retry / 注销流程任务失败（已用尽重试）.",
                "",
                f"Company / 公司:   {company_name} ({company_id})",
                f"DAG:              {dag_id}",
                f"Run / 运行:       {run_id}",
                f"Task / 任务:      {task_label}" + (f" (try {try_number})" if try_number else ""),
                f"Error / 错误:     {kind}: {text}",
                "",
                f"Log / 日志: {log_url}",
                "",
                "Nothing after this task runs until it is fixed and cleared; destructive stages fail closed.",
                "See docs/operations.md for what each stage checks and how to resume.",
            ]
        )
    )
    return message


def _task_label(ti) -> str:
    map_index = getattr(ti, "map_index", -1)
    return ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}[{map_index}]"


def _manifest_path(task, dag_id: str):
    """The task's manifest; tasks without one (the `@task` helpers) find it by the DAG's company id."""
    path = getattr(task, "manifest_path", None)
    if path:
        return path
    from dereg.manifest import company_id_from_path, manifest_paths

    for candidate in manifest_paths():
        if f"closure__{company_id_from_path(candidate)}" == dag_id:
            return candidate
    raise LookupError(f"no manifest for DAG {dag_id}")


def on_task_failure(context) -> None:
    """`on_failure_callback` of the closure tasks: send one alert, never raise."""
    ti = context.get("ti") or context.get("task_instance")
    task = context.get("task")
    try:
        from dereg.connections import smtp_hook
        from dereg.manifest import load_manifest

        manifest = load_manifest(_manifest_path(task, ti.dag_id))
        message = failure_message(
            company_id=manifest.company_id,
            company_name=f"{manifest.name_zh} / {manifest.name_en}",
            to=manifest.operations_email,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_label=_task_label(ti),
            try_number=getattr(ti, "try_number", None),
            error=context.get("exception"),
            log_url=ti.log_url,
        )
        hook = smtp_hook(manifest.smtp_conn_id).open()
        try:
            hook.send_raw(message["From"], message["To"], message.as_bytes(policy=SMTP_POLICY))
        finally:
            hook.close()
        log.info(
            "Failure alert for %s sent to the operations address of %s", _task_label(ti), manifest.company_id
        )
    except Exception as exc:  # an alert must never mask the task's own failure
        log.warning(
            "Failure alert for %s could not be sent (%s: %s); check the manifest's contacts.operations_email "
            "and the notify.smtp_conn_id connection",
            getattr(ti, "task_id", "?"),
            type(exc).__name__,
            redact(str(exc))[:300],
        )


def email_companies(
    rows_by_company: dict[str, list[dict]],
    smtp,
    *,
    subject: Callable[[str, list[dict]], str],
    body: Callable[[str, list[dict]], list[str]],
    what: str,
    sender: str = SENDER,
) -> int:
    """One e-mail per company to its operations address (from the manifests that validate), with
    `subject(company, rows)` and the lines `body(company, rows)`; returns messages sent. `smtp`: the
    SMTP provider's hook, opened only when there is something to send. `what` names the alert in
    the warning logged for a company without a manifest."""
    if not rows_by_company:
        return 0
    addresses = operations_addresses()
    sent = 0
    smtp.open()
    try:
        for company, rows in sorted(rows_by_company.items()):
            to = addresses.get(company)
            if not to:
                log.warning(
                    "no manifest with an operations address for company %s; %s not sent", company, what
                )
                continue
            message = EmailMessage()
            message["Subject"] = subject(company, rows)
            message["From"] = sender
            message["To"] = to
            message.set_content("\n".join(body(company, rows)))
            smtp.send_raw(sender, to, message.as_bytes(policy=SMTP_POLICY))
            sent += 1
    finally:
        smtp.close()
    return sent


def operations_addresses() -> dict[str, str]:
    """company id -> operations e-mail, from the manifests that validate."""
    from dereg.errors import ManifestError
    from dereg.manifest import load_manifest, manifest_paths

    found = {}
    for path in manifest_paths():
        try:
            m = load_manifest(path)
        except ManifestError:
            continue
        found[m.company_id] = m.operations_email
    return found
