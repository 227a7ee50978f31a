"""`make demo` for real: the embedded stack (SeaweedFS, SMTP sink, `airflow standalone`) under a
temporary state folder, the closure triggered as `ops` through the REST API, approved as `approver`
through the REST API by `dereg.stack.demo approve` (what `make demo-approve` runs)."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dereg.stack.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_block() -> int:
    """A port p such that p..p+3 and p+10000..p+10003 are free (SeaweedFS takes them all)."""
    for _ in range(200):
        p = free_port()
        if p > 50000:
            continue
        ports = [p + i for i in range(4)] + [p + 10000 + i for i in range(4)]
        try:
            socks = []
            for q in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", q))
                socks.append(s)
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return p
    raise RuntimeError("no free port block")


@pytest.fixture
def stack_env(tmp_path):
    env = {
        **os.environ,
        "DEREG_STATE_DIR": str(tmp_path / "state"),
        "DEREG_AIRFLOW_PORT": str(free_port()),
        "DEREG_S3_PORT": str(_free_block()),
        "DEREG_SMTP_PORT": str(free_port()),
        "DEREG_WORKER_LOG_PORT": str(free_port()),
        "DEREG_TRIGGER_LOG_PORT": str(free_port()),
    }
    for k in ("DEREG_STORE_URL", "DEREG_KEYRING", "DEREG_OUTPUT_DIR", "AIRFLOW_HOME"):
        env.pop(k, None)
    yield env
    subprocess.run([sys.executable, "-m", "dereg.stack.embedded", "down"], env=env, cwd=ROOT, timeout=120)


def _reader(proc, lines: queue.Queue):
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def _ops_tries_to_approve(env) -> str | None:
    """The user who triggered the run answers the approval: Airflow must refuse (not an assigned user)."""
    code = (
        "import sys; from dereg.stack import demo, embedded; from dereg.stack.rest import AirflowClient\n"
        "c = AirflowClient(demo._base_url(), 'ops', embedded.passwords()['ops'])\n"
        "run = c.latest_run(demo.DAG_ID)\n"
        "try:\n    c.answer_approval(demo.DAG_ID, run)\n    print('ANSWERED')\n"
        "except Exception as exc:\n    print('REFUSED', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return result.stdout + result.stderr


def test_make_demo_flow_to_a_verified_certificate(stack_env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "dereg.stack.demo", "run", "--students", "40", "--timeout", "600"],
        env=stack_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc, lines), daemon=True).start()
    output, approved, refused_self = [], None, None
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=5)
            except queue.Empty:
                continue
            if line is None:
                break
            output.append(line)
            if "waits at 'approve'" in line and approved is None:
                refused_self = _ops_tries_to_approve(stack_env)
                approved = subprocess.run(
                    [sys.executable, "-m", "dereg.stack.demo", "approve"],
                    env=stack_env,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(output)
    assert approved is not None, text[-4000:]
    assert refused_self is not None and "HTTP 403" in refused_self, refused_self
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "approver /" in text  # the second user's login is printed at the gate
    match = re.search(r"Signed certificate: (\S+)", text)
    assert match, text[-3000:]
    cert_path = Path(match.group(1))
    assert cert_path.is_file()
    verify = subprocess.run(
        [str(Path(sys.executable).parent / "dereg"), "verify-certificate", str(cert_path)],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "VALID" in verify.stdout and "cited ledger entries are in the ledger" in verify.stdout
    cert = json.loads(cert_path.read_text())
    assert cert["body"]["operator"] == "ops" and cert["body"]["approver"] == "approver"
    mail = list((Path(stack_env["DEREG_STATE_DIR"]) / "mail").glob("*.eml"))
    assert mail, "no notice reached the SMTP sink"


def test_a_taken_port_is_a_clear_error_not_a_hang(stack_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(stack_env["DEREG_S3_PORT"])))
        taken.listen()
        t0 = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "dereg.stack.embedded", "up"],
            env=stack_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert stack_env["DEREG_S3_PORT"] in result.stderr and "DEREG_S3_PORT" in result.stderr
    assert time.monotonic() - t0 < 30
