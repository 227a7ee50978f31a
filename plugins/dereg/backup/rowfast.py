"""The fast row reader: the same `json-rows` bytes as the generic SQLAlchemy path, without its per-row
result machinery, for every dialect that gives a raw batch cursor (MariaDB/MySQL with PyMySQL,
SQLite with sqlite3; see `fast_cursor` in dereg/dialects/).

Rows are read from the raw DBAPI connection in `FAST_BATCH` batches (`fetchmany`, never `fetchall`):
PyMySQL through an unbuffered server-side cursor (`SSCursor`), sqlite3 through its own cursor, so
memory stays flat whatever the table size. Each column gets one precomputed encoder:

* if SQLAlchemy would convert the driver's value for that column type (its result processor, e.g.
  SQLite's text dates, SQLite's float-backed decimals, MySQL TIME or JSON), the encoder applies that
  very processor and then `codec.encode_value`, so the result is the generic path's by construction;
* otherwise a kind-specific encoder with the same output as `codec.encode_value`, skipped
  entirely for values that already have the kind's plain JSON type (an int in an int column, a
  str in a text column, a float in a float column).

Rows are then serialised with one reused JSON encoder; the bytes are identical to
`codec.encode_row` (tests/integration/backup/test_fast_paths.py compares plaintext hashes).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.backup.codec import encode_value, kind_of
from dereg.dialects import dialect_for
from dereg.errors import BackupError

FAST_BATCH = 5000
# PyMySQL / MariaDB error numbers that mean the connection went away
_LOST = {1053, 1927, 2006, 2013, 2055}

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class _Never:
    """A type no driver value has: columns with this 'plain type' are always encoded."""


def supports(engine: Engine) -> bool:
    """Whether `engine` has a fast reader: its dialect gives a raw batch cursor for its driver
    (PyMySQL on MariaDB/MySQL, sqlite3 on SQLite; see dereg/dialects/)."""
    return dialect_for(engine).has_fast_reader(engine)


def _b64(value: Any) -> dict[str, str]:
    return {"b64": base64.b64encode(bytes(value)).decode("ascii")}


def _date(value: Any) -> dict[str, str]:
    return {"date": value if isinstance(value, str) else value.isoformat()}


def _datetime(value: Any) -> dict[str, str]:
    return {"dt": value if isinstance(value, str) else value.isoformat()}


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, int) else {"s": str(value)}


def _float(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) else {"s": str(value)}


# kind -> (the driver type that needs no conversion, the converter for any other non-NULL value)
_PLAIN: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "int": (int, _int),
    "float": (float, _float),
    "str": (str, str),
    "bool": (bool, bool),
    "decimal": (_Never, lambda v: {"d": str(v)}),
    "date": (_Never, _date),
    "datetime": (_Never, _datetime),
    "bytes": (_Never, _b64),
}


def _plan(columns: list[sa.Column], kinds: list[str], description, dialect):
    """Per column: (index, plain type, converter) for values converted only when not NULL and not of
    the plain type; and (index, function) for columns whose every value (NULL too) goes through
    SQLAlchemy's result processor and then `encode_value`."""
    plain: list[tuple[int, type, Callable[[Any], Any]]] = []
    processed: list[tuple[int, Callable[[Any], Any]]] = []
    for i, (column, kind) in enumerate(zip(columns, kinds, strict=True)):
        processor = column.type._cached_result_processor(dialect, description[i][1])
        if processor is not None:
            processed.append((i, lambda v, p=processor, k=kind: encode_value(p(v), k)))
        elif kind in _PLAIN:
            plain.append((i, *_PLAIN[kind]))
        else:
            processed.append((i, lambda v, k=kind: encode_value(v, k)))
    return plain, processed


def _batches(cursor, size: int) -> Iterator[list]:
    while True:
        batch = cursor.fetchmany(size)
        if not batch:
            return
        yield batch


def _abandon(cursor) -> None:
    """Forget a half-read PyMySQL unbuffered result, so that neither closing the cursor nor garbage
    collection tries to read the rest of it from a connection that is lost or being invalidated."""
    result = getattr(cursor, "_result", None)
    if result is not None and hasattr(result, "unbuffered_active"):
        result.unbuffered_active = False
        cursor._result = None


def _read_error(table: str, exc: BaseException) -> BackupError:
    """A clear error naming the table and the driver's error code, never the message (it may quote a
    stored value)."""
    code = getattr(exc, "sqlite_errorname", None) or (
        exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    )
    if isinstance(code, int) and code in _LOST:
        what = f"the connection to the source was lost while reading table {table} (error {code})"
    else:
        what = f"reading table {table} failed ({type(exc).__name__}" + (f" {code})" if code else ")")
    return BackupError(
        f"{what}; the driver's message is withheld because it may quote a stored value. "
        "The backup is marked failed; check the source server and re-run the task."
    )


def stream_rows(engine: Engine, table: sa.Table, write: Callable[[bytes], Any]) -> int:
    """Write `table`'s rows, ordered by primary key (or every column), as `json-rows` lines to
    `write`, one call per batch. Returns the row count."""
    columns = list(table.columns)
    kinds = [kind_of(c.type) for c in columns]
    order = list(table.primary_key.columns) or columns
    sql = str(sa.select(*columns).order_by(*order).compile(dialect=engine.dialect))
    dbapi_errors = engine.dialect.loaded_dbapi.Error
    raw = engine.raw_connection()
    rows = 0
    ok = False
    cursor = None
    try:
        cursor = dialect_for(engine).fast_cursor(raw.driver_connection)
        # with (empty) parameters: a "format" driver (PyMySQL) then turns the compiler's %% (a % in
        # a name) back into %, as it does for SQLAlchemy's own statements
        cursor.execute(sql, ())
        plain, processed = _plan(columns, kinds, cursor.description, engine.dialect)
        encode = _ENCODER.encode
        for batch in _batches(cursor, FAST_BATCH):
            lines = []
            append = lines.append
            for row in batch:
                values = list(row)
                for i, plain_type, convert in plain:
                    v = values[i]
                    if v is not None and type(v) is not plain_type:
                        values[i] = convert(v)
                for i, function in processed:
                    values[i] = function(values[i])
                append(encode(values))
            lines.append("")
            write("\n".join(lines).encode("utf-8"))
            rows += len(batch)
        cursor.close()  # only after success: an unbuffered cursor would read the rest first
        ok = True
    except dbapi_errors as exc:
        raise _read_error(table.name, exc) from None
    finally:
        if ok:
            raw.close()
        else:
            _abandon(cursor)
            raw.invalidate()  # a half-read unbuffered result: the connection cannot be reused
    return rows
