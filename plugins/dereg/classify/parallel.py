"""Tables scanned side by side in worker processes, so a full scan run as one command (`dereg scan
--full`, the post-erasure full scan) uses more than one core: the scanner is Python, and threads
would share one.

A pool of `workers_for(...)` processes (at most MAX_WORKERS, never more than the CPUs) takes the
tables heaviest first (the caller's `weight`), each worker with its own database engine and
the native search's compiled database handed over by the parent (`native.export`); while workers
started early (`start_early`) are still starting, the caller scans the lightest tables itself.
Results come back in the caller's order, so a report does not depend on which process finished
first.
Every worker streams its table as the single process does: memory stays flat in table size. Small
sources (under PARALLEL_MIN_ROWS rows) and SQLite (one file, one writer, often in memory) are
scanned in this process. Workers are forked from a clean server process (multiprocessing's
forkserver, where fork is available, else spawned): never from the caller, so no thread, lock or
pooled connection of the caller is inherited. The server imports the scan's modules once
(`WORKER_MODULES`) and every worker starts with them imported; `dereg scan --full` starts it
first thing, before its own imports (`dereg.scanworkers`). A worker takes the caller's environment
as it is when the pool starts. A script that starts a scan needs the usual
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dereg import scanworkers
from dereg.scanworkers import WORKER_MODULES  # noqa: F401 - where the workers' modules are listed
from dereg.scanworkers import context as _context

if TYPE_CHECKING:  # imported where used: `start_server` runs before them
    import sqlalchemy as sa

    from dereg.model import TableInfo

#: workers of one scan: two cores count (more would mostly wait on the same disk and server)
MAX_WORKERS = 2
#: below this many rows in all, starting workers costs more than it saves
PARALLEL_MIN_ROWS = 200_000

_ENGINE: sa.Engine | None = None  # a worker's own engine

#: the threads that join the workers of pools let go without waiting (`map_tables`)
_JOINING: list = []


def stop_server() -> None:
    """Wait for the workers let go (each exits once its last table is done), then end the server
    they were forked from and wait for it: no process is left behind, and the caller's resource
    usage (GNU time's CPU and peak memory) includes theirs. Runs at exit too (`start_server`)."""
    while _JOINING:
        _JOINING.pop().join()
    scanworkers.stop_server()


def start_server() -> None:
    """`scanworkers.start_server`: start the process workers are forked from, if not running; at
    exit it is ended and waited for (`stop_server`). Not with `DEREG_SCAN_WORKERS=1`."""
    scanworkers.start_server()


@dataclass(frozen=True)
class TableFailure:
    """A table that could not be read: the reason as `engine._reason` words it (no value)."""

    reason: str


def workers_for(engine: sa.Engine, tables: Sequence[TableInfo]) -> int:
    """How many processes scan `tables`: 1 (this process) for SQLite, a single table, a small
    source or inside a daemonic process (Celery's pool); else min(MAX_WORKERS, CPUs).
    `DEREG_SCAN_WORKERS` overrides (1 turns workers off)."""
    if os.environ.get("DEREG_SCAN_WORKERS"):
        return _most_workers(engine)
    if len(tables) < 2 or sum(max(t.row_count, 0) for t in tables) < PARALLEL_MIN_ROWS:
        return 1
    return _most_workers(engine)


def _most_workers(engine: sa.Engine) -> int:
    """`workers_for` a large source of many tables."""
    from dereg.dialects import dialect_for

    wanted = os.environ.get("DEREG_SCAN_WORKERS")
    if wanted:
        return max(1, int(wanted))
    if not dialect_for(engine).parallel_scan:
        return 1
    if multiprocessing.current_process().daemon:  # a Celery pool process may not start children
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


#: pools started before the inventory (`start_early`), by URL: the thread starting one, and then
#: the pool with its number of workers (None when the source is not large enough)
_EARLY: dict[str, tuple[object, list]] = {}


def _early(engine: sa.Engine, *, take: bool) -> tuple[ProcessPoolExecutor, int] | None:
    """The pool `start_early` started for `engine` once its thread is done (`take`: no longer
    `start_early`'s to let go), or None."""
    entry = _EARLY.pop(_url(engine), None) if take else _EARLY.get(_url(engine))
    if entry is None:
        return None
    thread, started = entry
    thread.join()
    return started[0] if started else None


def _starting(engine: sa.Engine) -> bool:
    """Whether `start_early` is still starting the workers of `engine`."""
    entry = _EARLY.get(_url(engine))
    return entry is not None and entry[0].is_alive()


#: while the workers start, the caller scans the lightest tables itself, up to this share of all
#: the tables' weight (a table of weight 0, read for its sample only, always)
HERE_WHILE_STARTING = 1 / 8


def _light_first(order: list[int], weights: list[int]) -> list[int]:
    """The indexes of `order` (heaviest first) the caller may scan while its workers start,
    lightest last (taken from the end)."""
    allowed = sum(weights) * HERE_WHILE_STARTING
    light: list[int] = []
    for i in reversed(order):
        if weights[i] and weights[i] > allowed:
            break
        allowed -= weights[i]
        light.append(i)
    return light[::-1]


def _url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _pool(engine: sa.Engine, workers: int) -> ProcessPoolExecutor:
    from dereg.classify import native, scanner

    exported = native.export(scanner.native_patterns())
    return ProcessPoolExecutor(
        workers,
        mp_context=_context(),  # no inherited threads, locks or connections
        initializer=_start_worker,
        initargs=(_url(engine), exported, dict(os.environ)),
    )


def _warm_up(module: str) -> None:
    importlib.import_module(module)


def start_early(engine: sa.Engine, tasks_module: str) -> None:
    """Start the worker processes of a full scan now, when the server's statistics say the source
    is large (`Dialect.estimated_rows`): they start and import `tasks_module` (where the tasks
    `map_tables` will hand them live) while this process inventories the source, and the next
    `map_tables` over it uses them (`stop_early` lets them go unused). The statistics are read and
    the processes started in a thread: the caller goes on with its inventory at once (starting a
    process waits for the server they are forked from to have made its imports)."""
    import threading

    if _url(engine) in _EARLY:
        return
    started: list = []
    thread = threading.Thread(
        target=_start_early, args=(engine, tasks_module, started), name="dereg-early-workers", daemon=True
    )
    _EARLY[_url(engine)] = (thread, started)
    thread.start()


def _start_early(engine: sa.Engine, tasks_module: str, started: list) -> None:
    """`start_early`'s thread: appends (pool, workers) to `started` when it started a pool."""
    import sqlalchemy as sa

    from dereg.dialects import dialect_for

    try:
        estimate = dialect_for(engine).estimated_rows(engine)
    except sa.exc.SQLAlchemyError:
        return
    if estimate is None or estimate < PARALLEL_MIN_ROWS:
        return
    workers = _most_workers(engine)
    if workers <= 1:
        return
    pool = _pool(engine, workers)
    for _ in range(workers):  # one task each: every process starts now
        pool.submit(_warm_up, tasks_module)
    started.append((pool, workers))


def stop_early(engine: sa.Engine) -> None:
    """Let the processes `start_early` started go, if no `map_tables` took them."""
    early = _early(engine, take=True)
    if early is not None:
        early[0].shutdown(wait=False, cancel_futures=True)


def _start_worker(url: str, exported, environment: dict[str, str]) -> None:
    global _ENGINE
    import sqlalchemy as sa

    from dereg.classify import native

    # the caller's environment now, not the server's when it started (DEREG_NATIVE_SCAN, PG*)
    os.environ.clear()
    os.environ.update(environment)

    native.preload(exported)
    # a small pool: a table's sample, its COPY and its counts beside reuse the connections of the
    # tables before (one connection each cost the server a new backend, 25 for seven tables)
    _ENGINE = sa.create_engine(
        url, hide_parameters=True, poolclass=sa.pool.QueuePool, pool_size=3, max_overflow=2
    )


def _run(task: Callable, info: TableInfo, args: tuple, reason: Callable[[BaseException], str]):
    return _guarded(task, _ENGINE, info, args, reason)


def _guarded(
    task: Callable, engine: sa.Engine, info: TableInfo, args: tuple, reason: Callable[[BaseException], str]
):
    import sqlalchemy as sa

    try:
        return task(engine, info, *args)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        return TableFailure(reason(exc))


class _Here:
    """The lightest tables scanned in this process, in a thread, while the early workers start
    (their server is still importing): time the caller spent waiting. Once they are started
    (`stop`), the table being scanned here is finished and no other is begun."""

    def __init__(
        self, engine: sa.Engine, tables: Sequence[TableInfo], task: Callable, args: tuple, reason
    ) -> None:
        import threading

        self._call = lambda i: _guarded(task, engine, tables[i], args, reason)
        self._lock = threading.Lock()
        self._stopped = False
        self._taken: list[int] = []
        self._results: dict[int, tuple[bool, object]] = {}  # index -> (raised, result or exception)
        self._thread: threading.Thread | None = None

    def start(self, light: list[int]) -> None:
        import threading

        def scan() -> None:
            while True:
                with self._lock:
                    if self._stopped or not light:
                        return
                    i = light.pop()  # the lightest left
                    self._taken.append(i)
                try:
                    self._results[i] = (False, self._call(i))
                except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                    self._results[i] = (True, exc)

        self._thread = threading.Thread(target=scan, name="dereg-scan-while-starting", daemon=True)
        self._thread.start()

    def stop(self) -> set[int]:
        """Begin no other table; the indexes of the tables taken here."""
        with self._lock:
            self._stopped = True
            return set(self._taken)

    def result(self, i: int) -> object:
        if i not in self._results and self._thread is not None:
            self._thread.join()
        raised, outcome = self._results[i]
        if raised:
            raise outcome  # type: ignore[misc]
        return outcome


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
    weights = [weight(t) for t in tables]
    largest_first = sorted(range(len(tables)), key=lambda i: -weights[i])
    here = _Here(engine, tables, task, args, reason)
    if workers > 1 and _starting(engine):
        here.start(_light_first(largest_first, weights))
    early = _early(engine, take=True)
    taken = here.stop()  # the workers are started: the tables not taken here go to them
    if early is not None and (workers <= 1 or early[1] != workers):
        early[0].shutdown(wait=False, cancel_futures=True)
        early = None
    if workers <= 1:
        for i, info in enumerate(tables):
            yield here.result(i) if i in taken else _guarded(task, engine, info, args, reason)
        return
    pool = early[0] if early is not None else _pool(engine, workers)
    finished = False
    try:
        futures = {
            i: pool.submit(_run, task, tables[i], args, reason) for i in largest_first if i not in taken
        }
        for i in range(len(tables)):
            result = here.result(i) if i in taken else futures[i].result()
            finished = i == len(tables) - 1  # a caller need not ask past the last result
            yield result
    finally:
        # every result in: the workers exit on their own while the caller goes on (waiting for
        # them took most of a second); a caller that stops early (a table failed) does not wait
        # for the tables not started
        joining = getattr(pool, "_executor_manager_thread", None)  # joins the workers
        pool.shutdown(wait=not finished, cancel_futures=True)
        if finished and joining is not None:
            _JOINING[:] = [t for t in _JOINING if t.is_alive()] + [joining]
