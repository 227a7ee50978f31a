"""The process a full scan's worker processes are forked from (multiprocessing's forkserver),
started before the command imports anything of the scan: the server's own imports
(`WORKER_MODULES`, half a second of CPU) are what the workers' first table waits for, and
importing `dereg.classify` first (every detector) would start them a tenth of a second later.
`dereg.classify.parallel` forks its workers from this server; at exit the server is ended and
waited for (`dereg.classify.parallel.stop_server` first waits for the workers)."""

from __future__ import annotations

import multiprocessing
import os
import sys

#: imported once by the server process workers are forked from (a missing one is skipped)
WORKER_MODULES = ["dereg.classify.engine", "numpy", "hyperscan", "psycopg2", "pymysql"]


def context() -> multiprocessing.context.BaseContext:
    """Forked from a server process that has imported WORKER_MODULES, where fork is available;
    else spawned."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    forked = multiprocessing.get_context("forkserver")
    forked.set_forkserver_preload(WORKER_MODULES)  # no effect once the server runs
    return forked


def start_server() -> None:
    """Start the process workers are forked from, if not running: it imports WORKER_MODULES while
    the caller goes on (a scan that then needs no workers has cost a process's imports); at exit
    it is ended and waited for. Not with `DEREG_SCAN_WORKERS=1`."""
    if os.environ.get("DEREG_SCAN_WORKERS") == "1":
        return
    if context().get_start_method() == "forkserver":
        import atexit
        from multiprocessing import forkserver

        forkserver.ensure_running()
        atexit.unregister(_stop_at_exit)
        atexit.register(_stop_at_exit)


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
