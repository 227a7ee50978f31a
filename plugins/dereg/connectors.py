"""How a stage function reaches the company's systems, handed to it rather than looked up.

The plain stage functions of `dereg` (inventory, classification, plan, backup, erase, ...) never
read an Airflow connection themselves: the operator builds a `Connectors` from the run's Airflow
connections, and the CLI or a test builds one from its own arguments (a SQLite URL, a moto or
SeaweedFS client). So the same function runs in a task, on the command line and in a unit test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine


@dataclass(frozen=True)
class Connectors:
    """Factories of the clients a stage needs.

    :param engine: conn_id -> a new SQLAlchemy engine of a database (a source, the successor);
        whoever asks for it disposes of it (use `database`, which does).
    :param object_client: an object source of the manifest (`object_sources[]`) -> an S3 client
        that reaches its bucket.
    """

    engine: Callable[[str], Engine]
    object_client: Callable[[Any], Any]

    @contextmanager
    def database(self, conn_id: str) -> Iterator[Engine]:
        """An engine of connection `conn_id`, disposed of however the block ends."""
        engine = self.engine(conn_id)
        try:
            yield engine
        finally:
            engine.dispose()
