"""What the e2e tests add to the demo stacks they start: Airflow's latencies shortened, and a teardown
that does not wait for SeaweedFS. `make demo` and `make distributed-demo` keep Airflow's defaults."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

#: read by every Airflow process of the stack (the devtools stacks do not set these keys)
FAST_AIRFLOW = {
    # an idle scheduler loop sleeps this long (default 1 s): a task waits up to that for the loop
    # that queues it once its upstream has finished, a dozen times along the closure
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
    # a task's supervisor waits in select() up to this long (default 5 s) and sometimes notices
    # only then that its task process has exited; a Celery worker (one task at a time) takes no
    # other task meanwhile
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
}


def kill_scratch_store(state: Path) -> None:
    """SIGKILL the SeaweedFS of the stack under `state` before its `down`: the test's store holds
    scratch data, and `weed server` does not exit on SIGTERM (see SeaweedS3.stop), so `down` would
    wait out its grace for nothing."""
    pid_file = state / "pids" / "seaweedfs.pid"
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
