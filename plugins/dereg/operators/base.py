"""`ComplianceOperator`: the base of every closure stage.

A stage proves its preconditions from the ledger, not only from DAG edges: before acting it looks
up, for this company and this run, the ledger entries of the stages it requires. It writes a
ledger entry when it starts, succeeds, fails or refuses. In a dry run, destructive stages record
what they would do and do nothing. What a stage returns goes to XCom, so it is counts and
references only; `redact` masks anything a third-party error message might carry. However a
stage ends, a signed checkpoint of the ledger's head is written off-site (`anchored`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import TaskDeferred

from dereg import config
from dereg.errors import DeregError, GateError
from dereg.redact import chain_has_database_error, database_error, is_database_error, redact

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What a stage knows about the closure run it belongs to."""

    manifest: Any  # dereg.manifest.Manifest
    run_id: str
    triggered_by: str
    dry_run: bool
    reason: str
    notice_window_days: int
    store: Any  # sqlalchemy Engine of the compliance store
    ledger: Any  # dereg.evidence.ledger.Ledger

    @property
    def company_id(self) -> str:
        return self.manifest.company_id

    def record(self, stage: str, event: str, actor: str | None = None, **details: Any):
        return self.ledger.append(
            company_id=self.company_id,
            run_id=self.run_id,
            stage=stage,
            event=event,
            actor=actor or self.triggered_by,
            details=details,
        )

    def succeeded(self, stage: str):
        return self.ledger.latest(
            company_id=self.company_id, run_id=self.run_id, stage=stage, event="succeeded"
        )

    def ledger_facts(self):
        """What the erase gate needs from the ledger: the latest outcome of each stage it relies on
        among this run's entries, and whether the whole hash chain verifies."""
        from dereg.erase.gate import LedgerFacts

        entries = self.ledger.entries(company_id=self.company_id, run_id=self.run_id)
        verification = self.ledger.verify()
        return LedgerFacts.gather(entries, verification.ok, verification.reason)

    def has_event(self, stage: str, event: str) -> bool:
        """Whether this run's ledger holds an `event` entry of `stage`."""
        entries = self.ledger.entries(company_id=self.company_id, run_id=self.run_id)
        return any(e.stage == stage and e.event == event for e in entries)

    def approvers(self) -> set[str]:
        """Who may approve: the manifest's approvers by name and by auth-manager id."""
        return set(self.manifest.approvers) | set(self.manifest.approver_ids.values())

    @property
    def artifacts(self):
        """The run's artifacts (inventories, classifications, plans, backups), by what they are."""
        from dereg.evidence.run_artifacts import RunArtifacts

        return RunArtifacts(self.store, self.company_id, self.run_id)

    @cached_property
    def plans(self) -> dict:
        """Every source's erasure plan, read once per task: the gate and the work see the same plans."""
        return self.artifacts.plans(self.manifest)

    def output_dir(self) -> Path:
        safe_run = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.run_id)
        path = config.output_dir() / self.company_id / safe_run
        path.mkdir(parents=True, exist_ok=True)
        return path


def manifest_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def anchored(method):
    """Decorate a stage's `execute` (or `execute_complete`): however it ends (succeeded, failed,
    refused, deferred), a signed checkpoint of the ledger's head is then written to the off-site
    store (`ComplianceMixin.checkpoint`), so the entries it just wrote cannot be silently removed."""

    @functools.wraps(method)
    def run_then_anchor(self, context, *args, **kwargs):
        try:
            result = method(self, context, *args, **kwargs)
        except BaseException:
            self.checkpoint(context)
            raise
        self.checkpoint(context)
        return result

    return run_then_anchor


class DatabaseFailure(DeregError):
    """A stage failed on a database error; the message keeps only its class and SQLSTATE."""


def without_database_detail(exc: BaseException, stage: str) -> BaseException:
    """`exc` as it may be logged and recorded: a database error (or one raised from it) loses the
    driver's message, which may quote a customer's row, before the task log prints its traceback."""
    if is_database_error(exc):
        return DatabaseFailure(
            f"{stage} failed on a database error: {database_error(exc)}. The driver's message is withheld "
            "because it may quote stored values; check the source's constraints and the task's inputs."
        )
    if chain_has_database_error(exc):
        # our own message is safe; the chained driver error printed below the traceback is not
        exc.__cause__ = None
        exc.__suppress_context__ = True
        exc.__context__ = None
    return exc


#: key of a stage's result holding the list a mapped task expands over (see `expands`)
EXPANDS = "_expands"


class ComplianceMixin:
    """Ledger and gate handling shared by `ComplianceOperator` and the approval gate."""

    stage: ClassVar[str] = ""
    #: stages that must have a `succeeded` ledger entry for this run before this one acts
    requires: ClassVar[tuple[str, ...]] = ()
    #: destructive stages only record what they would do in a dry run
    destructive: ClassVar[bool] = False
    #: the stage's result carries, under `EXPANDS`, the list the next (mapped) task expands over:
    #: that list becomes the return value, and the ledger's summary goes to the `summary` XCom key
    expands: ClassVar[bool] = False

    manifest_path: str

    def run_context(self, context) -> RunContext:
        from dereg.evidence.ledger import Ledger
        from dereg.evidence.store import open_store
        from dereg.manifest import load_manifest

        params = context["params"]
        dag_run = context["dag_run"]
        store = open_store(config.store_url())
        return RunContext(
            manifest=load_manifest(self.manifest_path),
            run_id=dag_run.run_id,
            triggered_by=getattr(dag_run, "triggering_user_name", None) or "unknown",
            dry_run=bool(params.get("dry_run", True)),
            reason=str(params.get("reason") or ""),
            notice_window_days=int(params.get("notice_window_days", 30) or 0),
            store=store,
            ledger=Ledger(store),
        )

    def check_gates(self, run: RunContext) -> None:
        missing = [stage for stage in self.requires if run.succeeded(stage) is None]
        if missing:
            message = (
                f"{self.stage} refuses to act for company {run.company_id}, run {run.run_id}: the ledger has no "
                f"successful {', '.join(missing)} for this run. Run the missing stage(s) first; the ledger, not "
                "the task state, is what counts."
            )
            run.record(self.stage, "refused", reason=message)
            raise GateError(message)

    def checkpoint(self, context) -> None:
        """Write a signed checkpoint of the ledger's head to the manifest's backup store
        (`dereg.evidence.checkpoints`). A failure is logged and never changes the stage's outcome:
        the next stage's checkpoint anchors these entries too, and `dereg verify-ledger
        --checkpoints` reports the entries after the latest checkpoint."""
        from dereg.connections import backup_location
        from dereg.evidence.checkpoints import write_checkpoint
        from dereg.keys import Keyring

        try:
            run = self.run_context(context)
            spec = run.manifest.backup
            key = write_checkpoint(
                run.store,
                backup_location(spec.conn_id, spec),
                Keyring.load(),
                company_id=run.company_id,
                run_id=run.run_id,
                stage=self.stage,
                retention_days=spec.retention_days,
                object_lock=spec.object_lock,
            )
            self.log.info("Ledger checkpoint written off-site: %s", key)
        except Exception as exc:  # noqa: BLE001 - the stage's own outcome must stand
            reason = database_error(exc) if is_database_error(exc) else str(exc)
            self.log.warning("Ledger checkpoint not written after %s: %s", self.stage, redact(reason))

    def record_failure(self, run: RunContext, exc: BaseException) -> None:
        if is_database_error(exc):
            message = database_error(exc)  # a driver's message may quote the failing row
        elif isinstance(exc, DeregError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
        try:
            run.record(self.stage, "failed", error_type=type(exc).__name__, error=redact(message))
        except Exception:  # noqa: BLE001 - never hide the original error behind a ledger problem
            log.exception("could not record the failure of %s in the ledger", self.stage)


class ComplianceOperator(ComplianceMixin, BaseOperator):
    """Base of the closure stages: gates, ledger entries, dry-run handling.

    Subclasses set `stage`, `requires`, `destructive` and implement `act(run, context) -> dict`,
    returning counts and references (it becomes the ledger details and the XCom value).

    :param manifest_path: path of the company manifest (YAML).
    """

    template_fields = ("manifest_path",)
    ui_color = "#e8f1fb"

    def __init__(self, *, manifest_path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.manifest_path = manifest_path

    @anchored
    def execute(self, context) -> dict:
        run = self.run_context(context)
        self.check_gates(run)
        ti = context.get("ti")
        run.record(self.stage, "started", try_number=getattr(ti, "try_number", None), dry_run=run.dry_run)
        failure: BaseException | None = None
        try:
            if self.destructive and run.dry_run:
                result = self.dry_run_summary(run, context)
                result["dry_run"] = True
                self.log.info("Dry run: %s did nothing. It would have: %s", self.stage, result)
            else:
                result = self.act(run, context)
        except TaskDeferred:
            run.record(self.stage, "deferred")
            raise
        except BaseException as exc:
            safe = without_database_detail(exc, self.stage)
            self.record_failure(run, safe)
            if safe is exc:
                raise
            failure = safe
        if failure is not None:
            # raised outside the handler, so the driver's error is not attached as its context
            raise failure
        expands = result.pop(EXPANDS, None) if self.expands else None
        entry = run.record(self.stage, "succeeded", **result)
        result["ledger_entry"] = entry.entry_id
        if self.expands:
            # the next, mapped task expands over this stage's return value (Airflow maps only over
            # return values), so the summary the ledger records goes to its own XCom key
            context["ti"].xcom_push(key="summary", value=result)
            return expands
        return result

    def act(self, run: RunContext, context) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def dry_run_summary(self, run: RunContext, context) -> dict:
        """What a destructive stage would do; it must not change anything."""
        return {}

    @cached_property
    def _progress(self):
        return lambda line: self.log.info("%s", line)
