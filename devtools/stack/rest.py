"""A small client of Airflow's REST API (v2) for the demo: trigger a closure, follow it, approve it."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from dereg.errors import DeregError


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.session = requests.Session()
        self.session.trust_env = False
        from devtools.stack.embedded import airflow_home

        try:
            r = self.session.post(
                f"{self.base_url}/auth/token", json={"username": username, "password": password}, timeout=30
            )
        except requests.ConnectionError as exc:
            raise DeregError(
                f"nothing answers at {self.base_url}: the stack is not running, or it was started on "
                "another port. Start it (`make demo`, `make demo-ui` or `make distributed-demo`), or set "
                "DEREG_AIRFLOW_PORT to the port it was started with"
            ) from exc
        if r.status_code not in (200, 201):
            raise DeregError(
                f"Airflow at {self.base_url} refused the login of {username!r} "
                f"(HTTP {r.status_code}); check the password in {airflow_home() / 'passwords.json'}"
            )
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def _call(self, method: str, path: str, **kwargs):
        # A read is asked again when the API server is too busy to answer within 30 s (its metadata
        # DB locked by the scheduler on a loaded machine); a change (POST, PATCH) is never repeated.
        tries = 3 if method == "GET" else 1
        for attempt in range(1, tries + 1):
            try:
                r = self.session.request(method, f"{self.base_url}/api/v2{path}", timeout=30, **kwargs)
                break
            except requests.Timeout:
                if attempt == tries:
                    raise DeregError(
                        f"Airflow REST {method} {path} got no answer within 30 s, {tries} times: the "
                        "API server is overloaded or stuck; see its log (make status)"
                    ) from None
        if r.status_code >= 400:
            raise DeregError(
                f"Airflow REST {method} {path} as {self.username!r} failed: HTTP {r.status_code} "
                f"{r.text[:500]}"
            )
        return r.json() if r.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self.session.get(f"{self.base_url}/api/v2/dags/{dag_id}", timeout=30)
            if r.ok:
                return r.json()
            if time.monotonic() > deadline:
                raise DeregError(
                    f"DAG {dag_id} did not appear in Airflow within {timeout:.0f} s; "
                    "check the dag-processor log and `airflow dags list-import-errors`"
                )
            time.sleep(0.5)

    def import_errors(self) -> list[dict]:
        return self._call("GET", "/importErrors").get("import_errors", [])

    def trigger(self, dag_id: str, conf: dict) -> str:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = self._call("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        data = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return {ti["task_id"]: ti["state"] for ti in data["task_instances"]}

    def latest_run(self, dag_id: str) -> str | None:
        data = self._call("GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-run_after", "limit": 1})
        runs = data.get("dag_runs", [])
        return runs[0]["dag_run_id"] if runs else None

    def active_runs(self, dag_id: str) -> list[str]:
        """Ids of the DAG's runs that are queued or running (a run waiting for approval is running)."""
        data = self._call(
            "GET", f"/dags/{dag_id}/dagRuns", params={"state": ["queued", "running"], "limit": 20}
        )
        return [r["dag_run_id"] for r in data.get("dag_runs", [])]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
        data = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        return data.get("value")

    def answer_approval(
        self,
        dag_id: str,
        run_id: str,
        task_id: str = "approve",
        option: str = "Approve",
        settle_seconds: float = 6,
    ) -> dict:
        # Airflow 3.3 race: an answer that lands before the scheduler has processed the executor event of
        # the pause ("finished with state success, but the task instance's state attribute is queued")
        # gets the resumed task marked failed. A human never answers that fast; a script waits a moment.
        ti = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        started = ti.get("start_date")
        if started:
            import datetime as dt

            age = (
                dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
            ).total_seconds()
            if age < settle_seconds:
                time.sleep(settle_seconds - age)
        return self._call(
            "PATCH",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails",
            json={"chosen_options": [option], "params_input": {}},
        )

    def follow(
        self,
        dag_id: str,
        run_id: str,
        *,
        on_change: Callable[[str, str | None], None],
        on_waiting: Callable[[str], None] | None = None,
        timeout: float = 3600,
        poll: float = 2,
    ) -> str:
        """Poll the run, reporting each task state change, until the run ends; return its state."""
        seen: dict[str, str | None] = {}
        announced = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.task_states(dag_id, run_id)
            for task_id, state in states.items():
                if seen.get(task_id, "<none>") != state and state is not None:
                    on_change(task_id, state)
                seen[task_id] = state
            waiting = [t for t, s in states.items() if s == "awaiting_input"]
            if waiting and not announced and on_waiting:
                on_waiting(waiting[0])
                announced = True
            run_state = self.run_state(dag_id, run_id)
            if run_state in ("success", "failed"):
                return run_state
            time.sleep(poll)
        raise DeregError(f"run {run_id} of {dag_id} did not finish within {timeout:.0f} s")
