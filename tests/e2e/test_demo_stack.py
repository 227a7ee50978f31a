"""The embedded stack of `make demo` for real (SeaweedFS, SMTP sink, `airflow standalone` under a
temporary state folder), driven in headless Chromium (Debian's `chromium`, through Playwright; no
browser download): `ops` triggers the demo closure from the UI's trigger form, `approver` approves
it in Required Actions, `auditor` finds the certificate VALID in the Compliance view.

DEREG_SCREENSHOTS=1 writes the screenshots to docs/screenshots/ (the README shows them); otherwise
they go to the test's scratch folder."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from devtools.stack.demo import DAG_ID
from devtools.stack.ports import free_port
from tests.e2e.stacks import FAST_AIRFLOW, kill_scratch_store

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"


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
        **FAST_AIRFLOW,
    }
    for k in ("DEREG_STORE_URL", "DEREG_KEYRING", "DEREG_OUTPUT_DIR", "AIRFLOW_HOME"):
        env.pop(k, None)
    yield env
    kill_scratch_store(Path(env["DEREG_STATE_DIR"]))
    subprocess.run([sys.executable, "-m", "devtools.stack.embedded", "down"], env=env, cwd=ROOT, timeout=120)


def _ops_tries_to_approve(env) -> subprocess.Popen:
    """The user who triggered the run answers the approval: Airflow must refuse (not an assigned user).
    Started, not waited for: it runs while the browser goes on (the run waits for the approval)."""
    code = (
        "import sys; from devtools.stack import demo, embedded; from devtools.stack.rest import AirflowClient\n"
        "c = AirflowClient(demo._base_url(), 'ops', embedded.passwords()['ops'])\n"
        "run = c.latest_run(demo.DAG_ID)\n"
        "try:\n    c.answer_approval(demo.DAG_ID, run)\n    print('ANSWERED')\n"
        "except Exception as exc:\n    print('REFUSED', exc)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _prepare_again(env) -> subprocess.Popen:
    """`make demo-ui` (or `make demo`) again while the run waits; started, not waited for."""
    return subprocess.Popen(
        [sys.executable, "-m", "devtools.stack.demo", "prepare", "--students", "40"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def _screenshot_dir(tmp_path: Path) -> Path:
    """docs/screenshots/ when DEREG_SCREENSHOTS=1 asks for new README pictures, else a scratch folder."""
    path = ROOT / "docs" / "screenshots" if os.environ.get("DEREG_SCREENSHOTS") == "1" else tmp_path / "shots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wait_for(client, run_id: str, *, task_state: str | None = None, timeout: float = 600) -> dict:
    """Poll the run until `approve` reaches `task_state` (or, without it, until the run ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = client.task_states(DAG_ID, run_id)
        run_state = client.run_state(DAG_ID, run_id)
        if task_state and states.get("approve") == task_state:
            return states
        if run_state in ("success", "failed"):
            assert task_state is None, f"run ended {run_state} before approve was {task_state}: {states}"
            return {"run": run_state, **states}
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} did not get there within {timeout:.0f} s: {states}")


def _sign_in(browser, base: str, user: str, password: str, next_path: str):
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(90_000)
    page.goto(f"{base}/auth/login?next={quote(next_path)}")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{next_path}**")
    return page


@pytest.mark.timeout(900)
def test_browser_closure_to_a_verified_certificate(stack_env, tmp_path):
    """ops triggers from the UI's form, approver approves in Required Actions, auditor reads the
    Compliance view: the certificate is VALID, and it verifies offline too."""
    chromium = Path(CHROMIUM)
    assert chromium.exists(), f"{CHROMIUM} is missing: `make test` installs it (apt-get install -y chromium)"
    from playwright.sync_api import sync_playwright

    from devtools.stack.rest import AirflowClient

    shots = _screenshot_dir(tmp_path)
    state = Path(stack_env["DEREG_STATE_DIR"])
    prepared = subprocess.run(  # what `make demo-ui` runs: start the stack, seed the demo school
        [sys.executable, "-m", "devtools.stack.demo", "prepare", "--students", "40"],
        env=stack_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
    assert "sign in as approver / " in prepared.stdout
    base = f"http://127.0.0.1:{stack_env['DEREG_AIRFLOW_PORT']}"
    passwords = json.loads((state / "airflow" / "passwords.json").read_text())
    ops = AirflowClient(base, "ops", passwords["ops"])
    ops.wait_for_dag(DAG_ID)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium))
        try:
            # ops: the trigger form, dry run switched off, a reason, no notice window
            page = _sign_in(browser, base, "ops", passwords["ops"], f"/dags/{DAG_ID}")
            page.get_by_test_id("trigger-dag-button").click()
            page.locator("label:has(input[name=element_dry_run])").click()
            assert not page.locator("input[name=element_dry_run]").is_checked()
            page.locator("#element_reason").fill("Browser test: Little Star Academy deregisters")
            page.locator("input[role=spinbutton][aria-valuemax='365']").fill("0")
            page.get_by_test_id("trigger-dag-submit").click()
            page.wait_for_url(f"**/dags/{DAG_ID}/runs/**")
            run_id = ops.latest_run(DAG_ID)
            run = ops._call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")
            assert run["conf"]["dry_run"] is False and run["conf"]["notice_window_days"] == 0
            assert run["triggering_user_name"] == "ops"
            _wait_for(ops, run_id, task_state="awaiting_input")
            # while the run waits for the approval, and beside the browser (both are checked before
            # approver answers): ops answering, and `make demo-ui` again, are both refused
            ops_answers, again = _ops_tries_to_approve(stack_env), _prepare_again(stack_env)
            page.goto(f"{base}/dags/{DAG_ID}")
            page.get_by_role("button", name="Required Actions").wait_for()
            page.screenshot(path=shots / "grid.png")

            # approver: Required Actions, read the plan, Approve
            page = _sign_in(browser, base, "approver", passwords["approver"], f"/dags/{DAG_ID}")
            page.set_viewport_size({"width": 1400, "height": 1250})
            page.get_by_role("button", name="Required Actions").click()
            page.get_by_text("Approve erasure / 批准删除").wait_for()
            page.screenshot(path=shots / "approval.png")
            _, out, err = _finished(ops_answers, 120)
            assert "HTTP 403" in out + err, out + err
            # `make demo-ui` again while the run waits: refused, nothing reseeded
            code, out, err = _finished(again, 300)
            assert code == 2 and "still has a run in progress" in err, err
            assert run_id in err and "Seeding" not in out
            # Airflow 3.3 race (see AirflowClient.answer_approval): let the pause settle before answering
            started = ops._call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/approve")["start_date"]
            age = (
                dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
            ).total_seconds()
            time.sleep(max(0.0, 6 - age))
            page.get_by_test_id("hitl-option-Approve").click()
            final = _wait_for(ops, run_id)
            assert final["run"] == "success", final

            # auditor (view only): the Compliance view in the UI's navigation
            page = _sign_in(browser, base, "auditor", passwords["auditor"], "/dags")
            page.get_by_role("link", name="Compliance").click()
            frame = page.frame_locator("iframe[title=Compliance]")
            row = frame.locator("tr.certificate", has_text=run_id)
            row.locator("td.verdict").wait_for()
            assert row.locator("td.verdict").inner_text() == "VALID"
            assert "certificate: succeeded" in frame.locator("td.stage").inner_text()
            assert int(frame.locator("td.notices-sent").inner_text()) > 0
            assert frame.locator("tr.backup td.retain").inner_text()[:4].isdigit()
            page.screenshot(path=shots / "compliance.png")
            with page.expect_download() as download:
                row.get_by_text("download JSON").click()
            downloaded = json.loads(Path(download.value.path()).read_text())
        finally:
            browser.close()

    cert_path = Path(ops.xcom(DAG_ID, run_id, "certificate")["certificate_path"])
    assert cert_path.is_file()
    assert json.loads(cert_path.read_text()) == downloaded
    verify = subprocess.run(
        [str(Path(sys.executable).parent / "dereg"), "verify-certificate", str(cert_path)],
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "VALID" in verify.stdout and "cited ledger entries are in the ledger" in verify.stdout
    cert = downloaded
    assert cert["body"]["operator"] == "ops" and cert["body"]["approver"] == "approver"
    assert cert["body"]["dry_run"] is False
    mail = list((state / "mail").glob("*.eml"))
    assert mail, "no notice reached the SMTP sink"
    for name in ("grid.png", "approval.png", "compliance.png"):
        assert (shots / name).stat().st_size > 10_000


def test_a_taken_port_is_a_clear_error_not_a_hang(stack_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(stack_env["DEREG_S3_PORT"])))
        taken.listen()
        t0 = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "devtools.stack.embedded", "up"],
            env=stack_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert stack_env["DEREG_S3_PORT"] in result.stderr and "DEREG_S3_PORT" in result.stderr
    assert time.monotonic() - t0 < 30
