"""Notices per second to a local SMTP server: Dereg's notify path against a plain smtplib loop.

One run, same server, same messages:

- **ours**: the stage's whole path for one source: the recipients read from the source database
  (one per address, naming each child), each notice rendered from the Jinja templates with its
  signed answer link, marked in the compliance store before and after sending (batched), and
  delivered through the SMTP provider's hook (`NoticeSmtpHook`) over one session, with the retry
  logic in place. The rate limit is set out of the way (10^9 a minute): it would only measure
  itself.
- **plain**: `smtplib.SMTP(...).sendmail(...)` in a loop over the *same* messages, already
  rendered to bytes by our renderer before the clock starts, over one connection; no database,
  no records, no retries.

The server is aiosmtpd in a separate process, counting and discarding messages (each side's count
is checked: exactly N). The compliance store is a SQLite file (`--store-url` for PostgreSQL).
Rounds alternate plain and ours; every round's rates and ratio are printed, then the median of
the rounds' ratios and the best of each side with their ratio, the RATIO (goal: ours at least 0.8
times plain; best against best, as the machine may be shared). `--profile` prints ours' cProfile.

    python -m benchmarks.notify [--notices 2000] [--rounds 7] [--store-url URL] [--profile]

Nothing printed holds an address or a name: only counts, rates and ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa

CONN = "bench_notify_smtp"
KEY = b"bench-pseudonym-key-0123456789ab"


def _serve(port: int, counter, ready) -> None:
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def _source(path: Path, n: int) -> sa.Engine:
    """n guardians with distinct addresses; every fifth has a second child."""
    engine = sa.create_engine(f"sqlite:///{path}")
    md = sa.MetaData()
    guardians = sa.Table(
        "guardians",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("email", sa.String),
    )
    students = sa.Table(
        "students",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String),
        sa.Column("guardian_id", sa.Integer, sa.ForeignKey("guardians.id")),
    )
    md.create_all(engine)
    kids = [{"id": i, "name": f"学生{i}", "guardian_id": i} for i in range(1, n + 1)]
    kids += [{"id": n + i, "name": f"学生{n + i}", "guardian_id": i} for i in range(1, n + 1, 5)]
    with engine.begin() as conn:
        conn.execute(
            guardians.insert(),
            [{"id": i, "name": f"家长{i}", "email": f"guardian{i}@bench.example"} for i in range(1, n + 1)],
        )
        conn.execute(students.insert(), kids)
    return engine


def _context(run_id: str):
    from dereg.notify.answers import answer_links
    from dereg.notify.render import NoticeContext

    deadline = dt.date.today() + dt.timedelta(days=30)
    manifest = SimpleNamespace(answer_base_url="https://dereg.bench.example", company_id="bench")
    return NoticeContext(
        company_name_zh="基准学校",
        company_name_en="Bench School",
        sender="基准学校 <privacy@bench.example>",
        reply_to="privacy@bench.example",
        categories=[("姓名", "Name"), ("手机号码", "Mobile number"), ("银行卡号", "Bank card number")],
        kept=["accounting_records: 会计档案管理办法, 30 年 / years"],
        erase_date=deadline,
        response_deadline=deadline,
        complaint="12377",
        answer_link=answer_links(manifest, run_id, KEY, deadline),
    )


def _recipients(engine):
    from dereg.notify.recipients import collect_recipients

    return collect_recipients(
        engine,
        subject_table="students",
        notify_table="guardians",
        email_column="email",
        name_column="name",
        link_column="guardian_id",
    )


def _ours(engine, store, run_id: str) -> int:
    from dereg.notify.deliver import send_notices

    report = send_notices(
        _recipients(engine),
        smtp_conn_id=CONN,
        ctx=_context(run_id),
        store=store,
        pseudonym_key=KEY,
        company_id="bench",
        run_id=run_id,
        dry_run=False,
        rate_per_minute=10**9,
    )
    return report.sent


def _plain(port: int, sender: str, messages: list[tuple[str, bytes]]) -> int:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    for to, data in messages:
        smtp.sendmail(sender, [to], data)
    smtp.quit()
    return len(messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notices", type=int, default=2000, help="recipients (default 2000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of each side, alternating (default 7)")
    parser.add_argument("--store-url", help="compliance store (default: a fresh SQLite file)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one extra round of ours")
    args = parser.parse_args(argv)

    from dereg.evidence.store import open_store
    from dereg.notify.deliver import message_id
    from dereg.notify.records import recipient_ref
    from dereg.notify.render import NoticeRenderer
    from devtools.stack.ports import free_port

    work = Path(tempfile.mkdtemp(prefix="dereg-bench-notify-"))
    port = free_port()
    os.environ[f"AIRFLOW_CONN_{CONN.upper()}"] = json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 30},
        }
    )
    mp = multiprocessing.get_context("spawn")
    counter, ready = mp.Value("i", 0), mp.Event()
    server = mp.Process(target=_serve, args=(port, counter, ready), daemon=True)
    server.start()
    if not ready.wait(60):
        print("the aiosmtpd server did not start", file=sys.stderr)
        return 1
    engine = _source(work / "source.db", args.notices)
    store = open_store(args.store_url or f"sqlite:///{work / 'store.db'}")
    print(
        f"notify benchmark: {args.notices} recipients, aiosmtpd on 127.0.0.1:{port} in its own process, "
        f"store {store.url.get_backend_name()}, {args.rounds} round(s)"
    )

    # the plain loop's messages: ours, rendered to bytes before its clock starts
    ctx = _context("plain")
    renderer = NoticeRenderer(ctx)
    messages = [
        (
            r.email,
            renderer.render(
                r, message_id=message_id("bench", "plain", recipient_ref(KEY, r.email), ctx.sender)
            ),
        )
        for r in _recipients(engine).reachable
    ]
    sender = renderer.envelope_sender
    _plain(port, sender, messages[:50])  # warm both paths up (imports, connection setup)
    _ours(engine, store, "warm-up")

    cpu = {"plain": [], "ours": []}

    def timed(fn, *a) -> float:
        before = counter.value
        started, cpu_started = time.perf_counter(), time.process_time()
        sent = fn(*a)
        elapsed = time.perf_counter() - started
        cpu["plain" if fn is _plain else "ours"].append(
            (time.process_time() - cpu_started) / len(messages) * 1000
        )
        time.sleep(0.2)  # let the server count the last message
        if sent != len(messages) or counter.value - before != len(messages):
            raise SystemExit(
                f"expected {len(messages)} messages, the server counted {counter.value - before}"
            )
        return len(messages) / elapsed

    plain_rates, our_rates = [], []
    for i in range(args.rounds):
        plain_rates.append(timed(_plain, port, sender, messages))
        our_rates.append(timed(_ours, engine, store, f"round-{i}"))
        print(
            f"round {i + 1}: plain {plain_rates[-1]:7.0f}/s   ours {our_rates[-1]:7.0f}/s   "
            f"ratio {our_rates[-1] / plain_rates[-1]:.2f}   client CPU ms/notice: plain {cpu['plain'][-1]:.3f}, "
            f"ours {cpu['ours'][-1]:.3f}"
        )
    ratio = max(our_rates) / max(plain_rates)
    median = statistics.median(o / p for o, p in zip(our_rates, plain_rates, strict=True))
    print(f"best: plain {max(plain_rates):.0f} notices/s, ours {max(our_rates):.0f} notices/s")
    print(f"median of the rounds' ratios: {median:.2f}")
    print(
        f"client CPU ms/notice (least): plain {min(cpu['plain']):.3f}, ours {min(cpu['ours']):.3f} "
        "(the server runs in its own process)"
    )
    print(
        f"RATIO ours/plain (best/best) = {ratio:.2f} (goal >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})"
    )

    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.enable()
        _ours(engine, store, "profile")
        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        profile = cProfile.Profile()
        profile.enable()
        _plain(port, sender, messages)
        profile.disable()
        print("plain:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    server.kill()
    engine.dispose()
    store.dispose()
    for p in sorted(work.glob("*"), reverse=True):
        p.unlink()
    work.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
