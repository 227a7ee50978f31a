"""`anchored`: however a stage's `execute` ends, a ledger checkpoint is then written off-site."""

from __future__ import annotations

import pytest

from dereg.operators.base import anchored


class Stage:
    def __init__(self, outcome):
        self.outcome, self.calls = outcome, []

    def checkpoint(self, context) -> None:
        self.calls.append(("checkpoint", context))

    @anchored
    def execute(self, context):
        self.calls.append(("execute", context))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def test_a_checkpoint_follows_success_failure_and_deferral():
    ok = Stage({"rows": 3})
    assert ok.execute("ctx") == {"rows": 3}
    assert ok.calls == [("execute", "ctx"), ("checkpoint", "ctx")]

    class Deferred(BaseException):  # Airflow's TaskDeferred is a BaseException too
        pass

    for outcome in (RuntimeError("boom"), Deferred()):
        stage = Stage(outcome)
        with pytest.raises(type(outcome)):
            stage.execute("ctx")
        assert stage.calls == [("execute", "ctx"), ("checkpoint", "ctx")]
