"""The process a full scan's worker processes are forked from (multiprocessing's forkserver).
Started by multiprocessing, it is a new interpreter that imports `WORKER_MODULES` (half a second
of CPU, which the workers' first table waits for). `dereg scan --full` starts it otherwise: once
the command has made those imports itself, and before it starts any thread or connection, the
server is the command's process forked (`start_server(here=True)`): nothing is imported twice and
the workers can start half a second sooner. `dereg.classify.parallel` forks its workers from this
server; at exit the server is ended and waited for (`dereg.classify.parallel.stop_server` first
waits for the workers)."""

from __future__ import annotations

import multiprocessing
import os
import sys

#: the database drivers a server imports when it is not told its source (`start_server(url=...)`)
DRIVER_MODULES = ("psycopg2", "pymysql")
#: imported once by the server process workers are forked from (a missing one is skipped)
WORKER_MODULES = ["dereg.classify.engine", "numpy", "hyperscan", *DRIVER_MODULES]


def context() -> multiprocessing.context.BaseContext:
    """Forked from a server process that has imported WORKER_MODULES, where fork is available;
    else spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forked = multiprocessing.get_context("forkserver")
    forked.set_forkserver_preload(WORKER_MODULES)  # no effect once the server runs
    return forked


def start_server(*, here: bool = False, url: str | None = None) -> None:
    """Start the process workers are forked from, if not running: it imports WORKER_MODULES while
    the caller goes on (a scan that then needs no workers has cost a process's imports); at exit
    it is ended and waited for. Not with `DEREG_SCAN_WORKERS=1`.

    `here`: this process imports WORKER_MODULES and the server is this process forked (`_fork_server`)
    instead of a new interpreter making the same imports again (half a second of CPU, and the
    workers waited for it); only while this process runs no other thread, else as without. With
    `url` (the source's SQLAlchemy URL) it imports that URL's driver instead of every one of
    DRIVER_MODULES (PyMySQL and the cryptography it loads cost a PostgreSQL scan a tenth of a second
    before its workers could start)."""
    if os.environ.get("DEREG_SCAN_WORKERS") == "1":
        return
    if context().get_start_method() == "forkserver":
        import atexit
        from multiprocessing import forkserver

        if not (here and _fork_server(url)):
            forkserver.ensure_running()
        atexit.unregister(_stop_at_exit)
        atexit.register(_stop_at_exit)


def _fork_server(url: str | None = None) -> bool:
    """Make WORKER_MODULES' imports here, then start multiprocessing's fork server as a fork of this
    process (its loop, `forkserver.main`, with nothing left to import); False when a server runs
    already or this process runs another thread (a fork would copy a lock that thread may hold)."""
    import importlib
    import inspect
    import socket
    import threading
    from multiprocessing import connection, forkserver, resource_tracker, util

    server = forkserver._forkserver
    if server._forkserver_pid is not None:
        return False
    if "authkey_r" in inspect.signature(forkserver.main).parameters:
        return False  # a later Python's server authenticates its clients: started as it does it
    for module in _drivers_left_out(url, WORKER_MODULES):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    if threading.active_count() > 1:
        return False
    resource_tracker.ensure_running()  # its descriptor is handed to every worker, as by the server
    address = connection.arbitrary_address("AF_UNIX")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        # every client holds the write end of the "alive" pipe; the server ends when all are gone
        alive_r, alive_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # the workers flush their copies as they end
            if stream is not None:
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the server: multiprocessing's own loop, until the pipe's end
            code = 0
            try:
                os.close(alive_w)
                forkserver.main(listener.fileno(), alive_r, [])
            except SystemExit:
                pass
            except BaseException:  # noqa: BLE001 - reported, and the server ends
                sys.excepthook(*sys.exc_info())
                code = 1
            finally:
                os._exit(code)  # never this process's exit handlers (they would stop the server)
        os.close(alive_r)
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid
    return True


def _drivers_left_out(url: str | None, modules: list[str]) -> list[str]:
    """`modules` less DRIVER_MODULES once `url`'s own driver is imported here (by its SQLAlchemy
    dialect); all of `modules` when there is no URL or its driver does not load (the scan then
    reports that itself)."""
    if url is None:
        return modules
    import sqlalchemy as sa

    try:
        sa.engine.make_url(url).get_dialect().import_dbapi()
    except Exception:  # noqa: BLE001 - any failure: the scan's own connection reports it
        return modules
    return [m for m in modules if m not in DRIVER_MODULES]


def _stop_at_exit() -> None:
    """`parallel.stop_server` when workers may have been started, else `stop_server`."""
    parallel = sys.modules.get("dereg.classify.parallel")
    (parallel.stop_server if parallel is not None else stop_server)()


def stop_server() -> None:
    """End the server and wait for it (its workers must be gone: `parallel.stop_server`)."""
    import signal
    from multiprocessing import forkserver

    server = forkserver._forkserver
    stop = getattr(server, "_stop", None)  # what the standard library's own tests use
    if stop is None:
        return
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        # its workers are gone and it holds nothing to save: ended at once, not after a teardown
        # of every module it imported (a fifth of a second), then waited for
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    stop()
