"""Tables scanned side by side in worker processes, so a full scan run as one command (`dereg scan
--full`, the post-erasure full scan) uses more than one core: the scanner is Python, and threads
would share one.

A pool of `workers_for(...)` processes (at most MAX_WORKERS, never more than the CPUs) takes the
tables largest first (rows times scanned columns), each worker with its own database engine and
the native search's compiled database handed over by the parent (`native.export`); results come
back in the caller's order, so a report does not depend on which worker finished first.
Every worker streams its table as the single process does: memory stays flat in table size. Small
sources (under PARALLEL_MIN_ROWS rows) and SQLite (one file, one writer, often in memory) are
scanned in this process. Workers are spawned, not forked (no inherited threads, locks or pooled
connections): a script that starts a scan needs the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from dereg.dialects import dialect_for
from dereg.model import TableInfo

#: workers of one scan: two cores count (more would mostly wait on the same disk and server)
MAX_WORKERS = 2
#: below this many rows in all, starting workers costs more than it saves
PARALLEL_MIN_ROWS = 200_000

_ENGINE: sa.Engine | None = None  # a worker's own engine


@dataclass(frozen=True)
class TableFailure:
    """A table that could not be read: the reason as `engine._reason` words it (no value)."""

    reason: str


def workers_for(engine: sa.Engine, tables: Sequence[TableInfo]) -> int:
    """How many processes scan `tables`: 1 (this process) for SQLite, a single table, a small
    source or inside a daemonic process (Celery's pool); else min(MAX_WORKERS, CPUs).
    `DEREG_SCAN_WORKERS` overrides (1 turns workers off)."""
    wanted = os.environ.get("DEREG_SCAN_WORKERS")
    if wanted:
        return max(1, int(wanted))
    if not dialect_for(engine).parallel_scan or len(tables) < 2:
        return 1
    if multiprocessing.current_process().daemon:  # a Celery pool process may not start children
        return 1
    if sum(max(t.row_count, 0) for t in tables) < PARALLEL_MIN_ROWS:
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def _start_worker(url: str, exported) -> None:
    global _ENGINE
    from dereg.classify import native

    native.preload(exported)
    _ENGINE = sa.create_engine(url, hide_parameters=True, poolclass=sa.pool.NullPool)


def _run(task: Callable, info: TableInfo, args: tuple, reason: Callable[[BaseException], str]):
    return _guarded(task, _ENGINE, info, args, reason)


def _guarded(
    task: Callable, engine: sa.Engine, info: TableInfo, args: tuple, reason: Callable[[BaseException], str]
):
    try:
        return task(engine, info, *args)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        return TableFailure(reason(exc))


def map_tables(
    engine: sa.Engine,
    tables: Sequence[TableInfo],
    task: Callable,
    *args,
    reason: Callable[[BaseException], str],
    weight: Callable[[TableInfo], int],
    workers: int | None = None,
) -> Iterator[object]:
    """task(engine, table, *args) for every table, in the order of `tables`; a table that cannot
    be read gives a TableFailure worded by `reason(exc)`; `weight(table)` orders the work, largest
    first. `task` and `reason` must be module-level functions (they go to a worker)."""
    workers = workers_for(engine, tables) if workers is None else workers
    if workers <= 1:
        for info in tables:
            yield _guarded(task, engine, info, args, reason)
        return
    from dereg.classify import native, scanner

    exported = native.export(scanner.native_patterns())
    url = engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")  # no inherited threads, locks or connections
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(url, exported)
    )
    finished = False
    try:
        largest_first = sorted(range(len(tables)), key=lambda i: -weight(tables[i]))
        futures = {i: pool.submit(_run, task, tables[i], args, reason) for i in largest_first}
        for i in range(len(tables)):
            result = futures[i].result()
            finished = i == len(tables) - 1  # a caller need not ask past the last result
            yield result
    finally:
        # every result in: the workers exit on their own while the caller goes on (waiting for
        # them took most of a second); a caller that stops early (a table failed) does not wait
        # for the tables not started
        pool.shutdown(wait=not finished, cancel_futures=True)
