"""Port helpers: a taken port is a clear error, never a hang."""

from __future__ import annotations

import socket
import time

from dereg.errors import DeregError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free(port: int, what: str, env_var: str) -> None:
    if not port_is_free(port):
        raise DeregError(
            f"port {port} for {what} is already taken on 127.0.0.1. Stop whatever listens there "
            f"(`make down` or `make distributed-down` if it is an earlier demo) or choose another port with {env_var}=<port>."
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str, host: str = "127.0.0.1", proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DeregError(f"{what} exited with code {proc.returncode} before listening on {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise DeregError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")
