"""How a stage function reaches the company's systems, handed to it rather than looked up.

The plain stage functions of `dereg` (inventory, classification, plan, backup, erase, ...) never
read an Airflow connection themselves: the operator builds a `Connectors` from the run's Airflow
connections, and the CLI or a test builds one from its own arguments (a SQLite URL, a moto or
SeaweedFS client). So the same function runs in a task, on the command line and in a unit test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine


def _airflow_database_url(conn_id: str):
    from dereg import connections

    return connections.database_url(connections.get_connection(conn_id))


def _airflow(name: str) -> Callable[..., Any]:
    """`dereg.connections.<name>`, imported when first called (so this module imports no Airflow)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        from dereg import connections

        return getattr(connections, name)(*args, **kwargs)

    return call


@dataclass(frozen=True)
class Connectors:
    """Factories of the clients a stage needs. The defaults read the run's Airflow connections
    through `dereg.connections`; a test or the CLI gives its own.

    :param engine: conn_id -> a new SQLAlchemy engine of a database (a source, the successor);
        whoever asks for it disposes of it (use `database`, which does).
    :param object_client: (an object source of the manifest (`object_sources[]`), the manifest's
        `backup` spec or None) -> an S3 client that reaches its bucket.
    :param exists: conn_id -> whether the connection exists (preflight).
    :param backup_location: (conn_id, the manifest's `backup` spec) -> the backup store's `S3Location`.
    :param smtp_hook: conn_id -> an unopened `NoticeSmtpHook`.
    :param database_url: conn_id -> the SQLAlchemy URL of a database connection.
    """

    engine: Callable[[str], Engine] = field(default_factory=lambda: _airflow("source_engine"))
    object_client: Callable[..., Any] = field(default_factory=lambda: _airflow("object_client"))
    exists: Callable[[str], bool] = field(default_factory=lambda: _airflow("connection_exists"))
    backup_location: Callable[[str, Any], Any] = field(default_factory=lambda: _airflow("backup_location"))
    smtp_hook: Callable[[str], Any] = field(default_factory=lambda: _airflow("smtp_hook"))
    database_url: Callable[[str], Any] = _airflow_database_url

    @contextmanager
    def database(self, conn_id: str) -> Iterator[Engine]:
        """An engine of connection `conn_id`, disposed of however the block ends."""
        engine = self.engine(conn_id)
        try:
            yield engine
        finally:
            engine.dispose()
