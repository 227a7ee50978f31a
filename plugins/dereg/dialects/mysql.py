"""MySQL and MariaDB (PyMySQL): RAND() sampling, an unbuffered fast reader, ALTER TABLE FORCE.

Backups have the server write each row as LOAD DATA text and read it through the mysqlclient C
driver on two connections sharing one snapshot (backup/mysqltext.py), or, without that driver,
through PyMySQL's unbuffered server-side cursor as JSON rows (backup/rowfast.py); purge
rebuilds each touched table (InnoDB with file-per-table writes a new .ibd) and says what InnoDB's
undo, redo and binary logs may still hold; the ledger's head row is read FOR UPDATE (InnoDB locks
the key range even while the row is absent).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dereg.dialects.base import Dialect, TableIdent, quote_table


class MySQL(Dialect):
    name = "mysql"
    #: how the backup captures the schema: `backup/schema.py` STATEMENT_READERS
    schema_reader = "mysql"
    sqlalchemy_names = frozenset({"mysql", "mariadb"})
    connection_types = frozenset({"mysql", "mariadb"})
    residual_risks = (
        "binary logs and relay logs until they are purged (PURGE BINARY LOGS / binlog_expire_logs_seconds)",
        "the InnoDB undo and redo logs until overwritten",
        "replicas",
        "mysqldump or snapshot backups",
    )
    default_driver = "pymysql"
    #: rows written by the server as LOAD DATA text, read through the mysqlclient C driver and
    #: loaded back by LOAD DATA LOCAL INFILE (backup/mysqltext.py, encoding mysql-text)
    native_rows = "mysql-text"

    def has_native_rows(self, engine: Engine) -> bool:
        import importlib.util

        return importlib.util.find_spec("MySQLdb") is not None

    def column_name(self, reflected: str) -> str:
        # SQLAlchemy reads names from SHOW CREATE TABLE and leaves its escaping in: a backtick
        # inside a name comes back doubled, and the column then "does not exist"
        return reflected.replace("``", "`")

    def random_order(self) -> sa.ColumnElement:
        return sa.func.rand()

    def has_fast_reader(self, engine: Engine) -> bool:
        return engine.dialect.driver == "pymysql"

    def fast_cursor(self, driver_connection: Any) -> Any:
        import pymysql.cursors

        return driver_connection.cursor(pymysql.cursors.SSCursor)

    def purge(self, engine: Engine, tables: list[str | TableIdent], notes: list[str]) -> str:
        return _purge(engine, tables, notes)

    def lock_ledger_head(self, conn: Connection, query: sa.Select) -> sa.Select:
        return query.with_for_update()  # InnoDB locks the (possibly absent) key range

    #: how long a compliance-store transaction waits for a named lock (`lock_name`), in seconds
    NAMED_LOCK_WAIT = 600

    @staticmethod
    def _lock_key(name: str) -> str:
        import hashlib

        return "dereg-" + hashlib.sha256(name.encode()).hexdigest()[:40]  # GET_LOCK names: 64 at most

    def lock_name(self, conn: Connection, name: str) -> None:
        # a named lock of the server: held by the session until RELEASE_LOCK (`unlock_name`)
        got = conn.execute(
            sa.text("SELECT GET_LOCK(:key, :wait)"),
            {"key": self._lock_key(name), "wait": self.NAMED_LOCK_WAIT},
        ).scalar()
        if got != 1:
            raise TimeoutError(
                f"the compliance store did not grant the lock {name!r} within {self.NAMED_LOCK_WAIT} s "
                "(another process holds it): nothing was changed; run again when it has finished"
            )

    def unlock_name(self, conn: Connection, name: str) -> None:
        try:
            conn.execute(sa.text("SELECT RELEASE_LOCK(:key)"), {"key": self._lock_key(name)})
            conn.commit()
        except sa.exc.SQLAlchemyError:
            pass  # the connection is gone, and its locks with it


DIALECT = MySQL()


@sa.event.listens_for(sa.Table, "column_reflect")
def _real_column_name(inspector, table, column_info) -> None:
    """Tables reflected for erase, verification and backup get the real names too."""
    if inspector.dialect.name in MySQL.sqlalchemy_names and "``" in column_info["name"]:
        column_info["name"] = column_info["key"] = DIALECT.column_name(column_info["name"])


def _purge(engine: Engine, tables: list[str | TableIdent], notes: list[str]) -> str:
    with engine.connect() as conn:
        per_table = conn.exec_driver_sql("SELECT @@innodb_file_per_table").scalar()
        for t in tables:
            conn.exec_driver_sql(f"ALTER TABLE {quote_table(conn, t)} FORCE")
    if not per_table:
        notes.append(
            "innodb_file_per_table is off: tables live in the shared system tablespace, whose freed "
            "pages are reused but not returned or overwritten at once"
        )
    notes.append(
        "InnoDB undo and redo logs, and the binary log if enabled, may hold old row images until "
        "they are purged or overwritten"
    )
    return "ALTER TABLE ... FORCE of each touched table (InnoDB rebuild into a new tablespace)"
