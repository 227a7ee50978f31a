"""Last line of defence against personal values in messages we did not write ourselves.

Dereg's own errors name tables and counts only, but a driver's exception text may quote a value.
Before such text reaches a log line or the ledger it passes through `redact`, which masks long
digit runs (ID, phone and card numbers) and e-mail addresses.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"(?<![0-9A-Za-z])(\+?\d[\d -]{5,}\d[0-9Xx]?)(?![0-9A-Za-z])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_QUOTED_PARAMS = re.compile(r"\[parameters: .*?\]", re.S)


def _mask_digits(match: re.Match) -> str:
    text = match.group(1)
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7:
        return text
    return text[:3] + "*" * max(len(text) - 6, 1) + text[-3:]


def reference_token(nbytes: int = 4) -> str:
    """A random hex suffix for a reference (backup id, key id) that `redact` never masks: one made
    only of digits (about 2 % of 8-digit draws) would read as a phone number and be masked in the
    logs and problems an operator has to match against object keys."""
    import secrets

    while True:
        token = secrets.token_hex(nbytes)
        if not token.isdigit():
            return token


def redact(text: str, limit: int = 600) -> str:
    """Mask values that could be personal; shorten to `limit` characters."""
    text = _QUOTED_PARAMS.sub("[parameters hidden]", str(text))
    text = _EMAIL.sub(lambda m: m.group(0)[0] + "***@" + m.group(0).split("@", 1)[1], text)
    text = _DIGITS.sub(_mask_digits, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _database_error_types(exc: BaseException) -> bool:
    # PEP 249: every driver's exceptions derive from its own Error, with DatabaseError and
    # InterfaceError below it; matching those names covers every driver without naming one
    return any(c.__name__ in ("DatabaseError", "InterfaceError") for c in type(exc).__mro__)


def is_database_error(exc: BaseException) -> bool:
    """Whether `exc` came from a database: SQLAlchemy's errors and any PEP 249 driver error."""
    import sqlalchemy as sa

    return isinstance(exc, sa.exc.SQLAlchemyError) or _database_error_types(exc)


#: what common SQLSTATEs mean, in words a reader can act on (the server's message is not kept)
_SQLSTATE_WORDS = {
    "23502": "not-null constraint violated",
    "23503": "foreign key constraint violated",
    "23505": "unique constraint violated",
    "23514": "check constraint violated",
    "40001": "serialization failure",
    "40P01": "deadlock detected",
    "42501": "permission denied",
    "42P01": "table does not exist",
    "42703": "column does not exist",
    "55P03": "lock not available",
    "57014": "statement canceled (timeout)",
}


def database_error(exc: BaseException, table: str | None = None) -> str:
    """A database error reduced to its class and code: "CheckViolation (SQLSTATE 23514)".

    A driver's message may quote the failing row (PostgreSQL's DETAIL "Failing row contains
    (...)", SQLite's "Could not decode ... with text '...'"), which `redact` cannot recognise as
    personal; so none of the message is kept, only what names the kind of failure, and the
    `table` when the caller knows it.
    """
    orig = getattr(exc, "orig", None)
    cause = orig if isinstance(orig, BaseException) else exc
    name = type(cause).__name__
    code = getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)
    if code:
        words = _SQLSTATE_WORDS.get(code)
        detail = f"SQLSTATE {code}: {words}" if words else f"SQLSTATE {code}"
    else:
        code = getattr(cause, "sqlite_errorname", None)
        args = getattr(cause, "args", ())
        if code is None and args and isinstance(args[0], int):
            code = args[0]  # drivers that report the server's error number first
        detail = f"error code {code}" if code is not None else ""
    text = f"{name} ({detail})" if detail else name
    return f"{text} in table {table}" if table else text


def chain_has_database_error(exc: BaseException) -> bool:
    """Whether `exc` or any exception it was raised from (cause or context) is a database error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if is_database_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False
