"""The source's schema in a backup (format version 4), and a restore that rebuilds it.

A backup's rows alone give back a pile of tables; this module adds what makes them a database
again. At backup time the source's schema is written as two sections, sealed like the rows:
`pre-data` (what must exist before rows are loaded: schemas, types, domains, tables, sequences,
functions, views) and `post-data` (what is added after: constraints, indexes, triggers; on
PostgreSQL also the sequences' current values). PostgreSQL: the server's own `pg_dump
--schema-only` of the whole database, read in the backup's snapshot and split where its post-data
section begins (encoding `pg-dump-sql`); MariaDB/MySQL: `SHOW CREATE
TABLE/VIEW/TRIGGER/PROCEDURE/FUNCTION`; SQLite: the SQL of `sqlite_master` (both encoding
`sql-statements`, one JSON object per statement and line).

On restore `--into` an empty database the schema is rebuilt, the rows loaded, the post-data part
added and every table's hash verified; on any failure nothing of it is left behind. PostgreSQL:
`pgcopy.restore_with_schema`, one transaction, running the sections through `run_pg_section`;
MariaDB/MySQL and SQLite: `restore_statements`, which drops what it created when anything fails.
Format: docs/backup-format.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dereg.backup.codec import restored_result, whole_lines
from dereg.errors import BackupError

PG_DUMP_SQL = "pg-dump-sql"
SQL_STATEMENTS = "sql-statements"
SECTIONS = ("pre-data", "post-data")
PG_DUMP_TIMEOUT = 600
INSERT_BATCH = 2000
# psql meta-commands pg_dump writes since 15.14/16.10/17.6 (a random key per dump): not SQL, and
# meaningless outside that one psql session
_RESTRICT = re.compile(rb"^\\(?:un)?restrict [A-Za-z0-9]+\n", re.MULTILINE)
_DEFINER = re.compile(r"\s*DEFINER\s*=\s*(?:`(?:[^`]|``)*`|'[^']*'|[^\s@]+)@(?:`(?:[^`]|``)*`|'[^']*'|\S+)")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _backquote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# --- capture ----------------------------------------------------------------------------------
def pg_dump_binary(server_version_num: int) -> str | None:
    """A pg_dump whose major version is at least the server's (an older one refuses a newer
    server): `DEREG_PG_DUMP`, the Debian/Ubuntu layout (/usr/lib/postgresql/<major>/bin), then PATH."""
    wanted = server_version_num // 10000
    cache_key = (wanted, os.environ.get("DEREG_PG_DUMP", ""), os.environ.get("PATH", ""))
    if cache_key not in _FOUND_PG_DUMP:
        _FOUND_PG_DUMP[cache_key] = _find_pg_dump(wanted)
    return _FOUND_PG_DUMP[cache_key]


_FOUND_PG_DUMP: dict[tuple[int, str, str], str | None] = {}


def _find_pg_dump(wanted: int) -> str | None:
    given = os.environ.get("DEREG_PG_DUMP", "")
    if given and os.access(given, os.X_OK) and _pg_dump_major(given) >= wanted:
        return given
    root = "/usr/lib/postgresql"
    if os.path.isdir(root):
        # the Debian/Ubuntu layout names the major version: no `pg_dump --version` to wait for
        majors = sorted((int(d) for d in os.listdir(root) if d.isdigit()), reverse=True)
        for path in (f"{root}/{m}/bin/pg_dump" for m in majors if m >= wanted):
            if os.access(path, os.X_OK):
                return path
    path = shutil.which("pg_dump")
    return path if path and _pg_dump_major(path) >= wanted else None


def _pg_dump_major(path: str) -> int:
    """The major version `path --version` reports (0 if it does not run or say)."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    found = re.search(r"PostgreSQL\)\s+(\d+)", out)
    return int(found.group(1)) if found else 0


# pg_dump's archive entry types of its post-data section (everything else a --schema-only dump
# writes is pre-data); pg_dump orders every pre-data entry before every post-data one
POST_DATA_TYPES = frozenset(
    {
        "CONSTRAINT",
        "FK CONSTRAINT",
        "CHECK CONSTRAINT",
        "INDEX",
        "INDEX ATTACH",
        "STATISTICS",
        "TRIGGER",
        "EVENT TRIGGER",
        "RULE",
        "POLICY",
        "ROW SECURITY",
        "PUBLICATION",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "SUBSCRIPTION",
        "SUBSCRIPTION TABLE",
        "MATERIALIZED VIEW DATA",
        "DEFAULT ACL",
    }
)
_ITEM_TYPE = re.compile(rb"^--\n-- Name: [^\n]*; Type: ([^;\n]+); Schema: [^\n]*\n--\n", re.MULTILINE)


def split_sections(dump: bytes) -> dict[str, bytes]:
    """One `pg_dump --schema-only` script as its pre-data and post-data sections, as
    `--section=pre-data` and `--section=post-data` would write them (each with the preamble of SET
    lines), from one run: half the catalog reading of two."""
    items = list(_ITEM_TYPE.finditer(dump))
    preamble = dump[: items[0].start()] if items else dump
    cut = next((m.start() for m in items if m.group(1).decode() in POST_DATA_TYPES), None)
    if cut is None:
        return {"pre-data": dump, "post-data": b""}
    return {"pre-data": dump[:cut], "post-data": preamble + dump[cut:]}


def libpq_env(url: sa.URL) -> dict[str, str]:
    """The environment a libpq program (pg_dump, psql) connects with to the server of `url`."""
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[var] = str(value)
    for key, value in (url.query or {}).items():  # e.g. sslmode
        if key in ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout"):
            env["PG" + key.upper()] = str(value)
    return env


class PgDump:
    """The schema of a PostgreSQL source by one `pg_dump --schema-only`, run in the background
    (sharing the backup's exported snapshot) while the rows are copied, split into sections."""

    def __init__(self, url: sa.URL, binary: str, snapshot: str | None):
        env = libpq_env(url)
        cmd = [
            binary,
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-tablespaces",
            "--no-security-labels",
            "--no-subscriptions",
            "--no-publications",
        ]
        if snapshot:
            cmd.append(f"--snapshot={snapshot}")
        self.result: bytes | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, args=(cmd, env), daemon=True)
        self._thread.start()

    def _run(self, cmd: list[str], env: dict) -> None:
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, timeout=PG_DUMP_TIMEOUT)
        except (OSError, subprocess.SubprocessError) as exc:
            self.error = f"pg_dump could not run ({type(exc).__name__})"
            return
        if done.returncode:
            # schema-only: its messages name objects and connection problems, never rows
            lines = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"]
            # the error line says what (e.g. "permission denied for table notes"), the last one
            # often only which query ("detail: Query was: LOCK TABLE ...")
            errors = [line for line in lines if "error:" in line]
            said = "; ".join(dict.fromkeys([*errors[:2], lines[-1]]))
            self.error = f"pg_dump failed (status {done.returncode}: {said[:400]})"
            if any("permission denied" in line for line in lines):
                self.error += (
                    ". The connection's user must be able to read every table of the backed-up schemas "
                    "(pg_dump locks each one): grant it SELECT, or back up as a user who has it"
                )
            return
        self.result = _RESTRICT.sub(b"", done.stdout)

    def join(self) -> None:
        self._thread.join()

    def wait(self) -> dict[str, bytes]:
        self.join()
        if self.error is not None or self.result is None:
            raise BackupError(
                f"the schema of the source could not be dumped: {self.error}. Check that pg_dump can "
                "connect with the source's credentials."
            )
        return split_sections(self.result)


def pg_sequence_values(cur) -> bytes:
    """`setval` statements giving every sequence of the user schemas its current value (pg_dump
    keeps them in its data section, which the schema sections leave out)."""
    cur.execute(
        "SELECT format('SELECT pg_catalog.setval(%L, %s, %s);', format('%I.%I', schemaname, sequencename), "
        "coalesce(last_value, start_value), CASE WHEN last_value IS NULL THEN 'false' ELSE 'true' END) "
        "FROM pg_catalog.pg_sequences WHERE schemaname <> 'information_schema' AND schemaname NOT LIKE 'pg\\_%' "
        "ORDER BY schemaname, sequencename"
    )
    lines = [row[0] for row in cur.fetchall()]
    if not lines:
        return b""
    header = "\n--\n-- Name: sequence values; Type: SEQUENCE SET; Schema: -\n--\n\n"
    return (header + "\n".join(lines) + "\n").encode()


def _raw(conn: sa.Connection, sql: str) -> list:
    """Run `sql` as it is on the driver's own cursor: no parameters, so a `%` in a name or in a
    view's text is not taken for a placeholder (PyMySQL formats a statement given parameters)."""
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def mysql_statements(conn: sa.Connection, tables: list[str]) -> dict[str, bytes]:
    """The schema of a MariaDB/MySQL database from SHOW CREATE: tables (in `tables` order) as
    pre-data; routines, views and triggers as post-data. DEFINER clauses are left out (the
    restoring account owns what it creates)."""
    return _mysql_statements(lambda statements: [_raw(conn, s) for s in statements], tables)


def mysql_statements_native(url: sa.URL, tables: list[str]) -> dict[str, bytes]:
    """`mysql_statements` through one mysqlclient connection (the server's own session settings,
    as SQLAlchemy's), every statement of a kind in one round trip."""
    from dereg.backup.mysqltext import connect, run_many

    conn = connect(url, multi=True, session=False)
    try:
        return _mysql_statements(lambda statements: run_many(conn, statements), tables)
    finally:
        conn.close()


def _mysql_statements(
    run_all: Callable[[list[str]], list[list[tuple]]], tables: list[str]
) -> dict[str, bytes]:
    """`run_all(statements)`: each statement's rows as text."""
    routines, views, triggers, mode, *creates = run_all(
        [
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_NAME",
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() "
            "ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER",
            "SELECT @@SESSION.sql_mode",
            *(f"SHOW CREATE TABLE {_backquote(name)}" for name in tables),
        ]
    )
    pre = [
        {"kind": "table", "name": name, "sql": rows[0][1]} for name, rows in zip(tables, creates, strict=True)
    ]
    # (kind, name, the column of SHOW CREATE <kind> that holds the statement)
    objects = [(kind.lower(), name, 2) for name, kind in routines]
    objects += [("view", name, 1) for (name,) in views]
    objects += [("trigger", name, 2) for (name,) in triggers]
    shown = (
        run_all([f"SHOW CREATE {kind.upper()} {_backquote(name)}" for kind, name, _ in objects])
        if objects
        else []
    )
    post = [
        {"kind": kind, "name": name, "sql": _DEFINER.sub("", rows[0][column] or "", count=1)}
        for (kind, name, column), rows in zip(objects, shown, strict=True)
    ]
    header = {"kind": "sql_mode", "name": "", "sql": mode[0][0] or ""}
    return {"pre-data": _lines([header, *pre]), "post-data": _lines([header, *post])}


def sqlite_statements(conn: sa.Connection, tables: list[str] | None = None) -> dict[str, bytes]:
    """The schema of a SQLite database: `sqlite_master`'s SQL, tables as pre-data, the rest post-data."""
    pre, post = [], []
    for kind, name, sql in conn.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\' ORDER BY rowid"
    ).fetchall():
        (pre if kind == "table" else post).append({"kind": kind, "name": name, "sql": sql})
    return {"pre-data": _lines(pre), "post-data": _lines(post)}


#: dialect's `schema_reader` -> the function that captures its schema as statement sections
STATEMENT_READERS: dict[str, Callable[[sa.Connection, list[str]], dict[str, bytes]]] = {
    "mysql": mysql_statements,
    "sqlite": sqlite_statements,
}


def _lines(statements: list[dict[str, str]]) -> bytes:
    return b"".join(
        (json.dumps(s, ensure_ascii=False, separators=(",", ":")) + "\n").encode() for s in statements
    )


def write_sections(session, encoding: str, sections: dict[str, bytes], **extra: Any) -> dict[str, Any]:
    """Seal and upload the sections; the manifest's `schema` entry."""
    described = {}
    for section in SECTIONS:
        stream = session.schema_stream(section)
        stream.write(sections.get(section, b""))
        stream.finish()
        described[section] = {
            "sha256": stream.digest.hexdigest(),
            "bytes": stream.size,
            "chunks": stream.chunks,
        }
    return {"encoding": encoding, **extra, "sections": described}


# --- restore ----------------------------------------------------------------------------------
def check_schema_entry(manifest: dict, *, manifest_key: str) -> dict | None:
    """The manifest's `schema` entry, checked for shape (version 4; None when absent)."""
    entry = manifest.get("schema")
    if entry is None:
        return None
    ok = (
        isinstance(entry, dict)
        and entry.get("encoding") in (PG_DUMP_SQL, SQL_STATEMENTS)
        and isinstance(entry.get("sections"), dict)
        and all(
            isinstance(entry["sections"].get(s), dict)
            and isinstance(entry["sections"][s].get("chunks"), list)
            and all(isinstance(k, str) for k in entry["sections"][s]["chunks"])
            for s in SECTIONS
        )
    )
    if not ok:
        raise BackupError(
            f"the manifest {manifest_key} is malformed (its schema entry); nothing was restored"
        )
    return entry


def read_sections(entry: dict, open_chunk: Callable[[str, int, str, bool], bytes | str]) -> dict[str, str]:
    """Each section's text, checked against its hash. `open_chunk(section, index, key, last)` gives
    a chunk's plaintext, or a problem (text) when it cannot be read or fails authentication."""
    texts = {}
    for section in SECTIONS:
        spec = entry["sections"][section]
        keys = spec["chunks"]
        parts = []
        for index, key in enumerate(keys):
            opened = open_chunk(section, index, key, index == len(keys) - 1)
            if isinstance(opened, str):
                raise BackupError(
                    f"schema section {section} of the backup cannot be used: {opened}. Nothing was restored."
                )
            parts.append(opened)
        data = b"".join(parts)
        if hashlib.sha256(data).hexdigest() != spec.get("sha256"):
            raise BackupError(
                f"schema section {section} of the backup does not match its hash in the manifest. "
                "Nothing was restored."
            )
        texts[section] = data.decode("utf-8")
    return texts


_CREATE_SCHEMA = re.compile(r"^CREATE SCHEMA (?!IF NOT EXISTS)", re.MULTILINE)
_PG_ITEM = re.compile(r"^--\n-- (?:Data for )?Name: ([^\n]*)\n--\n", re.MULTILINE)


def pg_items(sql: str) -> list[tuple[str, str]]:
    """A pg_dump script as (what, statements) items: the preamble (SET lines), then one item per
    archive entry, named by pg_dump's own header (`<name>; Type: <type>; Schema: <schema>`)."""
    items = []
    matches = list(_PG_ITEM.finditer(sql))
    head = sql[: matches[0].start()] if matches else sql
    items.append(("preamble", head))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(sql)
        what = re.sub(r"; Owner: .*$", "", m.group(1))
        items.append((what, sql[m.end() : end]))
    # an item may be comments only (`-- *not* creating schema, since initdb creates it`)
    return [(w, s) for w, s in items if any(ln.strip() and not ln.startswith("--") for ln in s.splitlines())]


def _pg_item_sql(what: str, statements: str) -> str:
    if what.endswith("; Type: SCHEMA; Schema: -"):
        # a fresh database has its `public` schema already (and pg_dump writes it when the
        # source's was re-created): nothing is in it yet, the tables were checked
        return _CREATE_SCHEMA.sub("CREATE SCHEMA IF NOT EXISTS ", statements)
    return statements


def pg_item_error(section: str, what: str, exc: Exception) -> BackupError:
    """The error for an item of a pg-dump-sql section the target refused: the object and the
    server's first line only (the DETAIL of a failed constraint may quote a row)."""
    primary = (
        getattr(getattr(exc, "diag", None), "message_primary", None)
        or (str(exc).strip().splitlines() or [""])[0]
    )
    return BackupError(
        f"schema section {section}, object {what!r} cannot be created in the target "
        f"({type(exc).__name__}: {primary[:300]}). Nothing was restored."
    )


def run_pg_section(cur, section: str, sql: str) -> None:
    """Run a pg-dump-sql section in the caller's transaction: in one round trip, and when the
    target refuses it, again item by item to name the item refused (an error naming it)."""
    import psycopg2

    items = pg_items(sql)
    cur.execute("SAVEPOINT dereg_schema")
    try:
        cur.execute("".join(_pg_item_sql(what, statements) for what, statements in items))
        cur.execute("RELEASE SAVEPOINT dereg_schema")
        return
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT dereg_schema")
    for what, statements in items:
        cur.execute("SAVEPOINT dereg_schema")
        try:
            cur.execute(_pg_item_sql(what, statements))
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT dereg_schema")
            raise pg_item_error(section, what, exc) from None
        cur.execute("RELEASE SAVEPOINT dereg_schema")
    raise BackupError(  # every item alone went in, all together not: still nothing kept
        f"schema section {section} cannot be created in the target as a whole. Nothing was restored."
    )


# post-data items that touch one table only and depend on nothing else of post-data: built on
# several connections at once, one table's items in order on one of them
_PARALLEL_POST_DATA = frozenset({"CONSTRAINT", "INDEX", "CHECK CONSTRAINT"})
_ITEM_KIND = re.compile(r"; Type: ([^;]+); Schema: ")
_IDENT_SQL = r'(?:"(?:[^"]|"")*"|[A-Za-z_][A-Za-z0-9_$]*)'
_ON_TABLE = re.compile(
    rf"^\s*(?:ALTER TABLE(?: ONLY)?|CREATE (?:UNIQUE )?INDEX {_IDENT_SQL} ON(?: ONLY)?)\s+"
    rf"({_IDENT_SQL}\.{_IDENT_SQL})[\s;]"
)


def pg_post_data_phases(
    sql: str, sizes: dict[str, int] | None = None
) -> tuple[str, list[list[list[tuple[str, str]]]]]:
    """A post-data section as (preamble, phases): each phase a list of groups of (what, statements)
    items; the groups of a phase may run at once on separate connections (a group in order), the
    phases one after the other. Phase 1: keys, unique and check constraints and indexes, grouped
    by table; phase 2: everything else but foreign keys, in pg_dump's order, one group (index
    attachments must precede a foreign key to a partitioned table); phase 3: foreign keys,
    grouped by the table that holds them. An item whose table cannot be read goes to phase 2.
    `sizes` (`schema.name` -> bytes) puts the largest tables' groups first."""
    preamble, first, later = pg_post_data_by_table(sql, sizes)
    phases = [list(first.values()), *later]
    return preamble, [p for p in phases if p]


def pg_post_data_by_table(
    sql: str, sizes: dict[str, int] | None = None
) -> tuple[str, dict[tuple[str, str], list[tuple[str, str]]], list[list[list[tuple[str, str]]]]]:
    """`pg_post_data_phases` with phase 1 as a mapping: (schema, table) as the server names them
    -> that table's group of items (largest tables first), which may run as soon as the table's
    rows are in; then the later phases."""
    items = pg_items(sql)
    preamble = "".join(s for w, s in items if w == "preamble")
    first: dict[str, list] = {}
    middle: list = []
    foreign: dict[str, list] = {}
    for what, statements in items:
        if what == "preamble":
            continue
        kind = _ITEM_KIND.search(what)
        table = _ON_TABLE.match(statements.lstrip("\n"))
        kind = kind.group(1) if kind else ""
        if table is not None and kind in _PARALLEL_POST_DATA:
            first.setdefault(table.group(1), []).append((what, statements))
        elif table is not None and kind == "FK CONSTRAINT":
            foreign.setdefault(table.group(1), []).append((what, statements))
        else:
            middle.append((what, statements))

    def largest_first(groups: dict[str, list]) -> list[str]:
        size = sizes or {}
        return sorted(groups, key=lambda k: -size.get(k.replace('"', ""), 0))

    by_table = {_split_qualified(k): first[k] for k in largest_first(first)}
    later = [[middle] if middle else [], [foreign[k] for k in largest_first(foreign)]]
    return preamble, by_table, [p for p in later if p]


_QUALIFIED_PART = re.compile(rf"({_IDENT_SQL})(?:\.|$)")


def _split_qualified(qualified: str) -> tuple[str, str]:
    """`schema.name` as pg_dump writes it (each part bare or double-quoted) -> (schema, name)."""
    parts = [
        p if not p.startswith('"') else p[1:-1].replace('""', '"') for p in _QUALIFIED_PART.findall(qualified)
    ]
    return (parts[0], parts[1]) if len(parts) == 2 else ("", qualified)


def _statements(section: str, text: str) -> list[dict[str, str]]:
    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not (
            isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("kind", "name", "sql"))
        ):
            raise BackupError(
                f"schema section {section}, statement {number} is malformed. Nothing was restored."
            )
        found.append(item)
    return found


def restore_statements(
    url: str,
    manifest: dict,
    sections: dict[str, str],
    names: list[str],
    chunks_of: Callable[[str, dict], Iterator[bytes]],
    *,
    problems: list[str],
    progress=None,
) -> dict[str, dict[str, Any]]:
    """Into an empty MariaDB/MySQL or SQLite database: the tables as the source had them (SHOW
    CREATE TABLE / sqlite_master, secondary indexes and foreign keys inline: foreign key checks are
    off while loading), the rows, then routines, views, triggers (or SQLite's indexes, views,
    triggers); every table read back in key order and hashed. On any failure what was created is
    dropped again."""
    from dereg.dialects import normalize_url, sqlalchemy_name

    pre, post = _statements("pre-data", sections["pre-data"]), _statements("post-data", sections["post-data"])
    if _native_mysql(url, manifest, pre, names):
        return _restore_mysql_native(
            url, manifest, pre, post, names, chunks_of, problems=problems, progress=progress
        )
    engine = sa.create_engine(normalize_url(url), hide_parameters=True)
    mysql = sqlalchemy_name(engine) == "mysql"
    created: list[tuple[str, str]] = []
    results: dict[str, dict[str, Any]] = {}
    done = False
    try:
        with engine.connect() as conn:
            if mysql:
                conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0")
            else:
                conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
            conn.commit()

            def run(section: str, item: dict) -> None:
                if item["kind"] == "sql_mode":
                    conn.exec_driver_sql("SET SESSION sql_mode = %s", (item["sql"],))
                    return
                try:
                    _raw(conn, item["sql"])
                    conn.commit()
                except conn.dialect.loaded_dbapi.Error as exc:
                    conn.rollback()
                    raise BackupError(
                        f"schema section {section}, {item['kind']} {item['name']!r} cannot be created in the "
                        f"target ({type(exc).__name__}). Nothing was restored."
                    ) from None
                created.append((item["kind"], item["name"]))

            for item in pre:
                run("pre-data", item)
            from dereg.backup import mysqltext

            native = [n for n in names if manifest["tables"][n].get("encoding") == mysqltext.MYSQL_TEXT]
            if native:  # format 5: LOAD DATA on two connections, each table read back natively
                conn.commit()
                results.update(
                    mysqltext.load_tables(
                        engine.url, manifest["tables"], native, chunks_of, problems, progress=progress
                    )
                )
            for name in names:
                if name in results:
                    continue
                spec = manifest["tables"][name]
                results[name] = _load_rows(engine, conn, name, spec, chunks_of(name, spec), problems, mysql)
                if progress:
                    progress(
                        f"restore {name}: {results[name]['restored_rows']}/{results[name]['expected_rows']} "
                        f"rows, {'ok' if results[name]['ok'] else 'MISMATCH'}"
                    )
            if problems:
                return results
            _run_post_data(post, run)
            if mysql:
                conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 1")
            done = True
        return results
    finally:
        if not done:
            _drop(engine, created, mysql)
        engine.dispose()


def _run_post_data(post: list[dict[str, str]], run: Callable[[str, dict[str, str]], None]) -> None:
    """The post-data statements through `run(section, item)`: sql_mode, routines (views and
    triggers may call them) and indexes in order, then the views, then the triggers."""
    for item in post:
        if item["kind"] not in ("view", "trigger"):
            run("post-data", item)
    # views are listed by name, not by what they read: one that reads a view not yet made is tried
    # again once the others are
    waiting = [item for item in post if item["kind"] == "view"]
    while waiting:
        later = []
        for item in waiting:
            try:
                run("post-data", item)
            except BackupError:
                later.append(item)
        if len(later) == len(waiting):
            run("post-data", later[0])  # no progress: the first one's error
        waiting = later
    for item in post:
        if item["kind"] == "trigger":
            run("post-data", item)


def _native_mysql(url: str, manifest: dict, pre: list[dict[str, str]], names: list[str]) -> bool:
    """Whether a restore into `url` goes through the mysqlclient driver alone: a MariaDB/MySQL
    target, every table `mysql-text`, pre-data only the sql_mode and the tables."""
    from dereg.backup import mysqltext

    return (
        mysqltext.reads_natively(url)
        and all(manifest["tables"][n].get("encoding") == mysqltext.MYSQL_TEXT for n in names)
        and all(item["kind"] in ("sql_mode", "table") for item in pre)
    )


def _restore_mysql_native(
    url: str,
    manifest: dict,
    pre: list[dict[str, str]],
    post: list[dict[str, str]],
    names: list[str],
    chunks_of: Callable[[str, dict], Iterator[bytes]],
    *,
    problems: list[str],
    progress=None,
) -> dict[str, dict[str, Any]]:
    """`restore_statements` into MariaDB/MySQL through the mysqlclient driver: the tables created and
    loaded on several connections at once (`mysqltext.create_and_load`), then the post-data
    statements on one; what was created is dropped again on any failure."""
    from dereg.backup import mysqltext
    from dereg.dialects import normalize_url

    target = sa.make_url(normalize_url(url))
    created: list[tuple[str, str]] = []
    done = False
    try:
        results = mysqltext.create_and_load(
            target, pre, manifest["tables"], names, chunks_of, problems, created, progress=progress
        )
        if problems:
            return results
        conn = mysqltext.connect(target, session=False)
        try:
            _run_post_data(post, mysqltext.statement_runner(conn, created))
        finally:
            conn.close()
        done = True
        return results
    finally:
        if not done:
            engine = sa.create_engine(target, hide_parameters=True)
            try:
                _drop(engine, created, mysql=True)
            finally:
                engine.dispose()


def _drop(engine: Engine, created: list[tuple[str, str]], mysql: bool) -> None:
    """Undo a failed restore: what it created, last first."""
    quote = _backquote if mysql else _quote
    with engine.connect() as conn:
        if mysql:
            conn.exec_driver_sql("SET SESSION FOREIGN_KEY_CHECKS = 0")
        for kind, name in reversed(created):
            what = {"table": "TABLE", "view": "VIEW", "trigger": "TRIGGER", "index": "INDEX"}.get(
                kind, kind.upper()
            )
            try:
                _raw(conn, f"DROP {what} IF EXISTS {quote(name)}")
                conn.commit()
            except conn.dialect.loaded_dbapi.Error:
                conn.rollback()


def _load_rows(
    engine: Engine,
    conn: sa.Connection,
    name: str,
    spec: dict,
    pieces: Iterator[bytes],
    problems: list[str],
    mysql: bool,
) -> dict[str, Any]:
    """Insert a json-rows table's rows into the table the pre-data created, then read it back by
    the backup's own reader (in key order) and hash it."""
    from dereg.backup import rowfast
    from dereg.backup.codec import decode_for_scratch

    columns = [c["name"] for c in spec["columns"]]
    kinds = [c["kind"] for c in spec["columns"]]
    quote, mark = (_backquote, "%s") if mysql else (_quote, "?")
    # the driver binds the decoded values (exact text for decimals and dates, bytes, numbers) and
    # the server converts them to the columns' own types
    insert = (
        f"INSERT INTO {quote(spec.get('name') or name)} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    if mysql:
        insert = insert.replace("%", "%%").replace("%%s", "%s")  # a % in a name is not a placeholder
    for index, lines in whole_lines(pieces):
        try:
            rows = [json.loads(line) for line in lines if line]
            for start in range(0, len(rows), INSERT_BATCH):
                conn.exec_driver_sql(
                    insert,
                    [
                        tuple(decode_for_scratch(v, k) for v, k in zip(row, kinds, strict=True))
                        for row in rows[start : start + INSERT_BATCH]
                    ],
                )
            conn.commit()
        except (sa.exc.SQLAlchemyError, ValueError) as exc:
            conn.rollback()
            problems.append(
                f"{name}: rows of chunk {index} ({spec['chunks'][index]}) cannot be loaded into the target "
                f"({type(getattr(exc, 'orig', None) or exc).__name__})"
            )
            break
    table = sa.Table(spec.get("name") or name, sa.MetaData(), autoload_with=conn)
    conn.rollback()
    digest = hashlib.sha256()
    count = rowfast.stream_rows(engine, table, digest.update)  # MariaDB/MySQL and SQLite both have it
    return restored_result(name, spec, count, digest.hexdigest(), problems)
