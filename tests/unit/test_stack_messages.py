"""What the demo stacks say when a user gets a step wrong: a one-line cause and the fix."""

from __future__ import annotations

import socket

import pytest

from dereg.errors import DeregError
from devtools.stack.ports import free_port, require_free
from devtools.stack.rest import AirflowClient


def test_approving_with_no_stack_running_says_how_to_start_it():
    port = free_port()
    with pytest.raises(DeregError) as caught:
        AirflowClient(f"http://127.0.0.1:{port}", "approver", "pw")
    message = str(caught.value)
    assert f"nothing answers at http://127.0.0.1:{port}" in message
    assert "make demo" in message and "DEREG_AIRFLOW_PORT" in message


def test_a_taken_port_names_both_ways_to_stop_an_earlier_demo():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(DeregError) as caught:
            require_free(port, "Airflow", "DEREG_AIRFLOW_PORT")
    message = str(caught.value)
    assert f"port {port} for Airflow is already taken" in message
    assert (
        "`make down`" in message and "`make distributed-down`" in message and "DEREG_AIRFLOW_PORT=" in message
    )
