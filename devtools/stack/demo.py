"""`make demo`: start the embedded stack, seed the demo school, trigger its closure as `ops` and follow it.

`python -m devtools.stack.demo run` (the whole demo), `approve` (answer the approval as `approver`), or
`prepare` (start and seed only, to trigger and approve in the UI: `make demo-ui`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from dereg.errors import DeregError
from devtools.stack import embedded
from devtools.stack.rest import AirflowClient

DAG_ID = "closure__demo_academy"
DEMO_CONF = {
    "dry_run": False,
    "reason": "Demo: Little Star Academy is deregistering (make demo)",
    "notice_window_days": 0,
}


def _base_url() -> str:
    return f"http://127.0.0.1:{embedded.ports()['airflow']}"


def prepare(
    students: int,
    start: Callable[[], object] = embedded.up,
    label: str = "the embedded stack under .state/",
    approve_hint: str = "make demo-approve",
    fresh_hint: str = "make clean-state",
) -> None:
    """Start the stack (the embedded one by default) and (re)seed the demo school's database."""
    from devtools.demo.seed import seed

    print(f"Starting {label} ...")
    start()
    _refuse_if_a_run_is_active(approve_hint, fresh_hint)
    print(f"Seeding the demo school's database ({students} students) ...")
    counts = seed(f"sqlite:///{embedded.demo_source_path()}", students=students)
    print("  " + ", ".join(f"{t}: {n}" for t, n in counts.items()))


def _refuse_if_a_run_is_active(approve_hint: str, fresh_hint: str) -> None:
    """Reseeding under a run that is still going would change the data its plan was made from, and a
    new run would only queue behind it (one run at a time), so the demo would wait without a word."""
    pw = embedded.passwords()
    ops = AirflowClient(_base_url(), "ops", pw["ops"])
    ops.wait_for_dag(DAG_ID)
    active = ops.active_runs(DAG_ID)
    if active:
        raise DeregError(
            f"{DAG_ID} still has a run in progress ({', '.join(active)}), perhaps waiting for approval. "
            f"Finish it first: approve it (`{approve_hint}` or the UI) and let it end, or mark it failed in "
            f"the UI ({_base_url()}/dags/{DAG_ID}); or start afresh with `{fresh_hint}`"
        )


def prepare_for_ui(students: int) -> int:
    prepare(students)
    pw = embedded.passwords()
    print(
        f"\nOpen {_base_url()}/dags/{DAG_ID} and sign in as ops / {pw['ops']}; Trigger, switch off the dry run,\n"
        "give a reason and set the notice window to 0 days (with the default 30 the run waits 30 days for the\n"
        f"customers' answers). At the approval, sign in as approver / {pw['approver']} and open Required Actions.\n"
        f"The Compliance page (left bar) shows the certificate; auditor / {pw['auditor']} may only view.\n"
        "`make down` stops the stack."
    )
    return 0


def run(
    students: int,
    follow_timeout: float,
    *,
    start: Callable[[], object] = embedded.up,
    label: str = "the embedded stack under .state/",
    approve_hint: str = "make demo-approve",
    fresh_hint: str = "make clean-state",
    verify_prefix: str = "",
) -> int:
    t0 = time.monotonic()
    prepare(students, start, label, approve_hint, fresh_hint)
    pw = embedded.passwords()
    ops = AirflowClient(_base_url(), "ops", pw["ops"])
    ops.wait_for_dag(DAG_ID)
    run_id = ops.trigger(DAG_ID, DEMO_CONF)
    triggered = time.monotonic()
    print(f"Triggered {DAG_ID} as ops: run {run_id}")

    def on_change(task_id: str, state: str | None) -> None:
        print(f"  [{time.strftime('%H:%M:%S')}] {task_id:20} {state}", flush=True)

    def on_waiting(task_id: str) -> None:
        print(
            f"\n  The run waits at '{task_id}' for a second person's approval.\n"
            f"  Approve in the UI: {_base_url()}/dags/{DAG_ID}/runs/{run_id}  "
            f"(log in as approver / {pw['approver']}, then Required Actions)\n"
            f"  or run `{approve_hint}` in another terminal.\n",
            flush=True,
        )

    state = ops.follow(DAG_ID, run_id, on_change=on_change, on_waiting=on_waiting, timeout=follow_timeout)
    if state != "success":
        failed = sorted(t for t, s in ops.task_states(DAG_ID, run_id).items() if s == "failed")
        print(
            f"\nThe run ended {state}; failed: {', '.join(failed) or 'no task (the run was stopped)'}. "
            f"Each task's log says why: {_base_url()}/dags/{DAG_ID}/runs/{run_id} (sign in as ops), and "
            "docs/operations.md#when-something-fails says what to do.",
            file=sys.stderr,
        )
        return 1
    cert = ops.xcom(DAG_ID, run_id, "certificate")
    done = time.monotonic()
    print(
        f"\nClosure finished {done - triggered:.0f} s after its trigger, the wait for the approval included "
        f"({done - t0:.0f} s since this command started, with the stack's start and the seeding)."
    )
    print(f"Signed certificate: {cert['certificate_path']}")
    print(f"Readable copy:      {cert['html_path']}")
    print(f"Verify it:          {verify_prefix}.venv/bin/dereg verify-certificate {cert['certificate_path']}")
    print(
        f"Compliance view:    {_base_url()}/dereg/compliance/ (Compliance in the UI's left bar; "
        f"auditor / {pw['auditor']} may view)"
    )
    return 0


def approve() -> int:
    pw = embedded.passwords()
    client = AirflowClient(_base_url(), "approver", pw["approver"])
    latest = client.latest_run(DAG_ID)
    if latest is None:
        raise DeregError(f"no run of {DAG_ID} to approve; start one with `make demo`")
    # the run at the gate, even when a later one is queued behind it (one run at a time)
    candidates = [*client.active_runs(DAG_ID), latest]
    for run_id in dict.fromkeys(candidates):
        if client.task_states(DAG_ID, run_id).get("approve") == "awaiting_input":
            client.answer_approval(DAG_ID, run_id)
            print(f"Approved run {run_id} of {DAG_ID} as approver.")
            return 0
    state = client.task_states(DAG_ID, latest).get("approve")
    raise DeregError(
        f"no run of {DAG_ID} waits for approval (the latest, {latest}, has approve {state!r}); "
        "approve once the demo prints that the run waits at 'approve'"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--students", type=int, default=500)
    r.add_argument("--timeout", type=float, default=3600)
    sub.add_parser("approve")
    p = sub.add_parser("prepare")
    p.add_argument("--students", type=int, default=500)
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            return prepare_for_ui(args.students)
        return run(args.students, args.timeout) if args.command == "run" else approve()
    except DeregError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
