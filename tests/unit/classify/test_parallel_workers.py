"""When a full scan starts worker processes (classify/parallel.py): only for a large source on a
server database, never inside a daemonic process; DEREG_SCAN_WORKERS overrides."""

from __future__ import annotations

import multiprocessing

import pytest
import sqlalchemy as sa

from dereg.classify import parallel
from dereg.model import ColumnInfo, TableInfo


def _table(name: str, rows: int) -> TableInfo:
    return TableInfo(
        name=name,
        schema=None,
        columns=[ColumnInfo(name="remark", type="TEXT")],
        primary_key=[],
        row_count=rows,
    )


def test_small_sources_sqlite_and_daemons_stay_in_one_process(monkeypatch):
    monkeypatch.delenv("DEREG_SCAN_WORKERS", raising=False)
    pg = sa.create_engine("postgresql+psycopg2://u@h/db")
    big = [_table("a", 150_000), _table("b", 100_000)]
    assert parallel.workers_for(pg, big) == min(parallel.MAX_WORKERS, multiprocessing.cpu_count())
    assert parallel.workers_for(pg, [_table("a", 150_000), _table("b", 10)]) == 1
    assert parallel.workers_for(pg, big[:1]) == 1
    assert parallel.workers_for(sa.create_engine("sqlite://"), big) == 1
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    assert parallel.workers_for(pg, big) == 1


def test_the_environment_overrides(monkeypatch):
    pg = sa.create_engine("postgresql+psycopg2://u@h/db")
    monkeypatch.setenv("DEREG_SCAN_WORKERS", "1")
    assert parallel.workers_for(pg, [_table("a", 10**6), _table("b", 10**6)]) == 1
    monkeypatch.setenv("DEREG_SCAN_WORKERS", "2")
    assert parallel.workers_for(pg, [_table("a", 1)]) == 2


def test_one_process_yields_in_order_and_reports_unreadable_tables():
    engine = sa.create_engine("sqlite://")
    tables = [_table("a", 1), _table("b", 2)]

    def task(engine, info, suffix):
        if info.name == "b":
            raise sa.exc.OperationalError("SELECT", {}, Exception("gone"))
        return info.name + suffix

    out = list(
        parallel.map_tables(engine, tables, task, "!", reason=lambda exc: "unreadable", weight=lambda t: 0)
    )
    assert out[0] == "a!" and out[1] == parallel.TableFailure("unreadable")


def _environment_task(engine, info, name):
    import os

    return info.name, os.environ.get(name), os.getpid()


def _pids_task(engine, info, _):
    import os

    return os.getpid(), os.getppid()


def _reason(exc: BaseException) -> str:
    return type(exc).__name__


def test_workers_take_the_environment_of_the_caller_when_the_pool_starts(monkeypatch):
    # the server workers are forked from started before the variable was set: they see it all the same
    parallel.start_server()
    monkeypatch.setenv("DEREG_TEST_WORKER_SETTING", "seen")
    engine = sa.create_engine("sqlite://")
    tables = [_table("a", 1), _table("b", 2)]
    out = list(
        parallel.map_tables(
            engine,
            tables,
            _environment_task,
            "DEREG_TEST_WORKER_SETTING",
            reason=_reason,
            weight=lambda t: t.row_count,
            workers=2,
        )
    )
    assert [(name, value) for name, value, _ in out] == [("a", "seen"), ("b", "seen")]
    assert all(pid != __import__("os").getpid() for *_, pid in out)


def _run_script(script, text: str):
    """`text` written to `script` and run by this Python with the project on its path and the
    workers not turned off; its completed process (it must have succeeded)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script.write_text(text)
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "plugins")])}
    env.pop("DEREG_SCAN_WORKERS", None)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


_AT_EXIT = """
import os
import sqlalchemy as sa
from dereg.classify import parallel
from dereg.model import ColumnInfo, TableInfo
from tests.unit.classify.test_parallel_workers import _pids_task, _reason

if __name__ == "__main__":
    from dereg import scanworkers
    from multiprocessing import forkserver

    print("marker")  # still in this process's buffer (a pipe) when the server starts
    scanworkers.start_server(here=HERE)
    server = forkserver._forkserver._forkserver_pid
    with open(f"/proc/{server}/cmdline", "rb") as theirs, open("/proc/self/cmdline", "rb") as mine:
        print("forked" if theirs.read() == mine.read() else "spawned")
    tables = [TableInfo(name=n, schema=None, columns=[ColumnInfo(name="r", type="TEXT")], primary_key=[], row_count=1) for n in "ab"]
    out = parallel.map_tables(sa.create_engine("sqlite://"), tables, _pids_task, None, reason=_reason, weight=lambda t: 0, workers=2)
    print(" ".join(str(pid) for pids in out for pid in pids))
"""


@pytest.mark.parametrize("here", [False, True])
def test_no_worker_or_server_is_left_running_at_exit(tmp_path, here):
    """The server workers are forked from is a new interpreter importing the scan's modules, or
    (`here`, as `dereg scan --full` starts it) this process forked once they are imported; either
    way the workers and the server are gone when the caller exits."""
    import os
    from pathlib import Path

    done = _run_script(tmp_path / "scan_at_exit.py", _AT_EXIT.replace("HERE", repr(here)))
    marker, how, *listed = done.stdout.split()
    assert marker == "marker" and done.stdout.count("marker") == 1  # not printed by every copy
    assert how == ("forked" if here else "spawned")
    pids = {int(p) for p in listed}
    assert pids and os.getpid() not in pids
    assert len(pids) >= 2  # the workers and the server they were forked from
    for pid in pids:  # the workers were joined and their server ended and waited for
        assert not Path(f"/proc/{pid}").exists()


def test_the_caller_scans_the_lightest_tables_while_its_early_workers_start():
    import os
    import threading
    import time

    engine = sa.create_engine("sqlite://")
    started: list = []

    def start() -> None:  # as `start_early` does, slowly: the caller does not wait idle
        time.sleep(1)
        started.append((parallel._pool(engine, 2), 2))

    thread = threading.Thread(target=start, daemon=True)
    parallel._EARLY[parallel._url(engine)] = (thread, started)
    thread.start()
    tables = [_table("heavy", 1000), _table("none", 0), _table("big", 900), _table("light", 10)]
    out = list(
        parallel.map_tables(
            engine, tables, _pids_task, None, reason=_reason, weight=lambda t: t.row_count, workers=2
        )
    )
    here = [t.name for t, (pid, _) in zip(tables, out, strict=True) if pid == os.getpid()]
    assert here == ["none", "light"]  # at most an eighth of the weight; heavier ones go to workers
    assert parallel._url(engine) not in parallel._EARLY


_DRIVERS = """
import sys
from dereg import scanworkers

if __name__ == "__main__":
    scanworkers.start_server(here=True, url=URL)
    print(" ".join(sorted(m for m in scanworkers.DRIVER_MODULES if m in sys.modules)) or "none")
"""


@pytest.mark.parametrize(
    "url, imported",
    [
        ("sqlite://", "none"),  # its driver is the standard library's
        ("postgresql+psycopg2://nobody@127.0.0.1:1/none", "psycopg2"),
        ("mysql+pymysql://nobody@127.0.0.1:1/none", "pymysql"),
        ("nosuchdialect://x", "psycopg2 pymysql"),  # not known here: every driver, as without a URL
        (None, "psycopg2 pymysql"),
    ],
)
def test_a_forked_server_imports_only_the_driver_of_its_source(tmp_path, url, imported):
    """`dereg scan --full` forks the server from itself once it has made the workers' imports: the
    driver of the source's URL, not every driver (a PostgreSQL scan loaded PyMySQL and the
    cryptography it imports before its workers could start). Nothing is connected to."""
    done = _run_script(tmp_path / "drivers.py", _DRIVERS.replace("URL", repr(url)))
    assert done.stdout.split("\n")[0] == imported
