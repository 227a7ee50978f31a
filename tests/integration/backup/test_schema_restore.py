"""Format version 4: the schema is in the backup and `--into` rebuilds it (issue 17); a corrupted
schema object is a clear error and leaves nothing behind; the scratch verification checks keys;
older formats restore data-only and say so. (pagila and mall: tests/integration/realworld/.)"""

from __future__ import annotations

import hashlib
import json

import pytest
import sqlalchemy as sa

from dereg.backup import pgcopy
from dereg.backup.restore import RestoreReport, _rebuilds_schema, restore_and_verify
from dereg.errors import BackupError


def _sqlite_schema(url: str) -> set[tuple[str, str, str]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(
                conn.exec_driver_sql("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")
            )
    finally:
        engine.dispose()


def _add_objects(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE INDEX ix_payments_paid_on ON payments (paid_on)")
        conn.exec_driver_sql(
            "CREATE VIEW big_payments AS SELECT id, amount FROM payments WHERE amount > 1900"
        )
        conn.exec_driver_sql(
            "CREATE TRIGGER no_negative BEFORE INSERT ON payments WHEN NEW.amount < 0 "
            "BEGIN SELECT RAISE(ABORT, 'negative'); END"
        )
    engine.dispose()


def test_a_sqlite_backup_restores_its_schema_into_a_fresh_database(
    sqlite_url, planted, take_backup, location, keyring, store, tmp_path
):
    _add_objects(sqlite_url)
    record = take_backup(sqlite_url)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=target
    )
    assert report.ok, report.problems
    assert not report.warnings
    assert _sqlite_schema(target) == _sqlite_schema(sqlite_url)
    assert {n: t["restored_rows"] for n, t in report.tables.items()} == {
        "guardians": 2,
        "students": 2,
        "payments": 201,
    }


def test_a_corrupted_schema_object_is_an_error_naming_it_and_nothing_is_restored(
    sqlite_url, planted, take_backup, location, keyring, store, s3_client, bucket_name, tmp_path
):
    record = take_backup(sqlite_url)
    manifest = json.loads(s3_client.get_object(Bucket=bucket_name, Key=record.manifest_key)["Body"].read())
    key = manifest["schema"]["sections"]["post-data"]["chunks"][0]
    blob = bytearray(s3_client.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    blob[-20] ^= 1
    s3_client.put_object(Bucket=bucket_name, Key=key, Body=bytes(blob))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    with pytest.raises(BackupError, match="schema section post-data") as failed:
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store, into_url=target)
    assert key in str(failed.value) and "fails authentication" in str(failed.value)
    assert _sqlite_schema(target) == set()


def test_a_statement_the_target_refuses_undoes_the_restore(
    sqlite_url, planted, take_backup, location, keyring, store, tmp_path
):
    _add_objects(sqlite_url)
    record = take_backup(sqlite_url)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    engine = sa.create_engine(target)
    with engine.begin() as conn:  # not a table of the backup, but the view's name is taken
        conn.exec_driver_sql("CREATE TABLE big_payments (x int)")
    engine.dispose()
    with pytest.raises(BackupError, match="view 'big_payments' cannot be created"):
        restore_and_verify(record.backup_id, location=location, keyring=keyring, store=store, into_url=target)
    assert {name for _kind, name, _sql in _sqlite_schema(target)} == {"big_payments"}


def test_scratch_verification_reports_a_broken_primary_key(pg_url):
    plaintext = b"1\tx\n1\t\\N\n"
    spec = {
        "encoding": "pg-copy-text",
        "rows": 2,
        "sha256": hashlib.sha256(plaintext).hexdigest(),
        "bytes": len(plaintext),
        "chunks": ["k/0"],
        "columns": [
            {"name": "id", "pg_type": "integer", "pg_builtin": True, "not_null": True},
            {"name": "v", "pg_type": "text", "pg_builtin": True, "not_null": True},
        ],
        "primary_key": ["id"],
    }
    problems: list[str] = []
    results = pgcopy.restore_into_postgresql(
        pg_url,
        {"tables": {"t": spec}},
        ["t"],
        lambda name, spec: iter([plaintext]),
        keep=False,
        problems=problems,
    )
    assert results["t"]["restored_rows"] == 2  # the rows themselves are as backed up
    assert any("primary key value(s) (id) occur more than once" in p for p in problems), problems
    assert any("NULL in a NOT NULL column" in p for p in problems), problems


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_formats_restore_data_only_and_say_so(version, sqlite_url):
    report = RestoreReport("bk-1", ok=False)
    lines: list[str] = []
    manifest = {"backup_id": "bk-1", "version": version, "dialect": "sqlite"}
    assert _rebuilds_schema(manifest, None, sqlite_url, report, lines.append) is False
    assert f"version {version} backup" in report.warnings[0] and "data-only" in report.warnings[0]
    assert lines and "data-only" in lines[0]


def _mariadb_objects(url: str) -> dict[str, object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
            return {
                "tables": {
                    n: conn.exec_driver_sql(f"SHOW CREATE TABLE `{n.replace('%', '%%')}`").fetchone()[1]
                    for n in tables
                },
                "views": sorted(sa.inspect(conn).get_view_names()),
                "triggers": [r[0] for r in conn.exec_driver_sql("SHOW TRIGGERS")],
                "routines": [
                    r[0]
                    for r in conn.exec_driver_sql(
                        "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()"
                    )
                ],
            }
    finally:
        engine.dispose()


def test_a_mariadb_backup_restores_views_triggers_and_routines(
    mariadb_url, second_mariadb_url, make_source, take_backup, location, keyring, store
):
    make_source(mariadb_url)
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2")
        # `a_big` reads `b_paid`, which sorts after it: created once the other is there
        conn.exec_driver_sql("CREATE VIEW b_paid AS SELECT id, amount, twice(id) AS t FROM payments")
        conn.exec_driver_sql("CREATE VIEW a_big AS SELECT id FROM b_paid WHERE amount > 1900")
        # PyMySQL formats what SQLAlchemy sends: %% here is one % in the name
        conn.exec_driver_sql("CREATE TABLE `50%%_off` (id INT PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO `50%%_off` VALUES (1)")
        conn.exec_driver_sql("CREATE VIEW `c_%%s` AS SELECT id FROM payments WHERE memo LIKE '%%期%%'")
        conn.exec_driver_sql(
            "CREATE TRIGGER no_negative BEFORE INSERT ON payments FOR EACH ROW "
            "SET NEW.amount = GREATEST(NEW.amount, 0)"
        )
    engine.dispose()
    record = take_backup(mariadb_url)
    report = restore_and_verify(
        record.backup_id, location=location, keyring=keyring, store=store, into_url=second_mariadb_url
    )
    assert report.ok, report.problems
    assert report.tables["50%_off"]["restored_rows"] == 1
    assert _mariadb_objects(second_mariadb_url) == _mariadb_objects(mariadb_url)


def test_a_mariadb_view_the_target_refuses_undoes_the_tables_made_on_several_connections(
    mariadb_url, second_mariadb_url, make_source, take_backup, location, keyring, store
):
    make_source(mariadb_url)
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE VIEW big_payments AS SELECT id, amount FROM payments WHERE amount > 1900"
        )
    engine.dispose()
    record = take_backup(mariadb_url)
    target = sa.create_engine(second_mariadb_url)
    with target.begin() as conn:  # not a table of the backup, but the view's name is taken
        conn.exec_driver_sql("CREATE TABLE big_payments (x int)")
    try:
        with pytest.raises(BackupError, match="view 'big_payments' cannot be created"):
            restore_and_verify(
                record.backup_id, location=location, keyring=keyring, store=store, into_url=second_mariadb_url
            )
        assert sa.inspect(target).get_table_names() == ["big_payments"]
    finally:
        target.dispose()


def test_a_mariadb_target_that_already_has_a_table_is_refused_before_anything(
    mariadb_url, second_mariadb_url, make_source, take_backup, location, keyring, store
):
    make_source(mariadb_url)
    record = take_backup(mariadb_url)
    target = sa.create_engine(second_mariadb_url)
    with target.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE payments (x int)")
    try:
        with pytest.raises(BackupError, match="already has table.*'payments'.*Nothing was restored"):
            restore_and_verify(
                record.backup_id, location=location, keyring=keyring, store=store, into_url=second_mariadb_url
            )
        assert sa.inspect(target).get_table_names() == ["payments"]
    finally:
        target.dispose()


def test_a_mariadb_table_the_target_refuses_undoes_the_others(second_mariadb_url):
    from dereg.backup import mysqltext
    from dereg.backup.schema import restore_statements

    tables, specs = [], {}
    for n in range(12):  # more tables than connections: each creates several
        name = f"t{n:02d}"
        sql = (
            f"CREATE TABLE `{name}` (id INT PRIMARY KEY)"
            if n != 7
            else f"CREATE TABLE `{name}` (id NO_SUCH_TYPE)"
        )
        tables.append({"kind": "table", "name": name, "sql": sql})
        plaintext = b"1\n2\n"
        specs[name] = {
            "encoding": mysqltext.MYSQL_TEXT,
            "name": name,
            "rows": 2,
            "sha256": hashlib.sha256(plaintext).hexdigest(),
            "bytes": len(plaintext) + n,
            "chunks": ["k"],
            "columns": [{"name": "id", "mysql_type": "int"}],
            "primary_key": ["id"],
        }
    mode = {"kind": "sql_mode", "name": "", "sql": "STRICT_ALL_TABLES"}
    sections = {"pre-data": "\n".join(json.dumps(s) for s in [mode, *tables]), "post-data": json.dumps(mode)}
    with pytest.raises(BackupError, match="table 't07' cannot be created"):
        restore_statements(
            second_mariadb_url,
            {"tables": specs},
            sections,
            list(specs),
            lambda name, spec: iter([b"1\n2\n"]),
            problems=[],
        )
    engine = sa.create_engine(second_mariadb_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


_PRE = """SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: extra; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA extra;

--
-- Name: mood; Type: TYPE; Schema: extra; Owner: -
--

CREATE TYPE extra.mood AS ENUM ('ok', 'sad');

--
-- Name: parent; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.parent (id integer NOT NULL, v text);

--
-- Name: child; Type: TABLE; Schema: extra; Owner: -
--

CREATE TABLE extra.child (id integer NOT NULL, parent_id integer, m extra.mood);
"""
_POST = """SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: parent parent_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.parent
    ADD CONSTRAINT parent_pkey PRIMARY KEY (id);

--
-- Name: child child_pkey; Type: CONSTRAINT; Schema: extra; Owner: -
--

ALTER TABLE ONLY extra.child
    ADD CONSTRAINT child_pkey PRIMARY KEY (id);

--
-- Name: ix_child_m; Type: INDEX; Schema: extra; Owner: -
--

CREATE INDEX ix_child_m ON extra.child USING btree (m);

--
-- Name: child child_parent_id_fkey; Type: FK CONSTRAINT; Schema: extra; Owner: -
--

ALTER TABLE ONLY extra.child
    ADD CONSTRAINT child_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES public.parent(id);
"""


def _spec(schema: str, name: str, plaintext: bytes, columns: list[str]) -> dict:
    return {
        "encoding": "pg-copy-text",
        "schema": schema,
        "name": name,
        "rows": plaintext.count(b"\n"),
        "sha256": hashlib.sha256(plaintext).hexdigest(),
        "bytes": len(plaintext),
        "chunks": ["k/0"],
        "columns": [{"name": c} for c in columns],
    }


def _objects(url: str) -> set:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(
                conn.exec_driver_sql(
                    "SELECT 'class', relname FROM pg_class WHERE relnamespace NOT IN "
                    "('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace) "
                    "UNION ALL SELECT 'schema', nspname FROM pg_namespace UNION ALL "
                    "SELECT 'type', typname FROM pg_type WHERE typtype = 'e' UNION ALL "
                    "SELECT 'constraint', conname FROM pg_constraint WHERE connamespace <> 'pg_catalog'::regnamespace"
                )
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("child_rows", [b"1\t1\tok\n2\t\\N\tsad\n", b"1\t1\tok\n1\t2\tsad\n"])
def test_restore_with_schema_on_several_connections_builds_it_all_or_leaves_nothing(
    pg_url, monkeypatch, jobs, child_rows
):
    """Tables loaded and keys, indexes and foreign keys built on DEREG_PG_JOBS connections; when a
    post-data item fails (a duplicate key, a broken foreign key), everything the restore created
    (a schema, a type, tables) is dropped again, as the single-transaction path leaves nothing."""
    monkeypatch.setattr(pgcopy, "JOBS", jobs)
    monkeypatch.setattr(pgcopy, "PSQL_COPY_BYTES", 0)  # several connections: read back by psql
    parent = b"1\tx\n2\t\\N\n"
    manifest = {
        "tables": {
            "parent": _spec("public", "parent", parent, ["id", "v"]),
            "extra.child": _spec("extra", "child", child_rows, ["id", "parent_id", "m"]),
        }
    }
    data = {"parent": parent, "extra.child": child_rows}
    before = _objects(pg_url)
    problems: list[str] = []
    sections = {"pre-data": _PRE, "post-data": _POST}
    run = lambda: pgcopy.restore_with_schema(  # noqa: E731
        pg_url, manifest, sections, ["parent", "extra.child"], lambda n, s: iter([data[n]]), problems=problems
    )
    if child_rows.startswith(b"1\t1\tok\n2"):
        results = run()
        assert not problems and all(r["ok"] for r in results.values()), (problems, results)
        added = _objects(pg_url) - before
        assert {("constraint", "child_parent_id_fkey"), ("class", "ix_child_m"), ("type", "mood")} <= added
    else:  # child id 1 twice: its primary key cannot be built, and parent_id 2 is fine
        with pytest.raises(BackupError, match="child_pkey"):
            run()
        assert _objects(pg_url) == before


def test_a_table_the_user_may_not_read_stops_the_schema_dump_and_says_what_to_grant(pg_url):
    import uuid

    from dereg.backup import schema

    role = f"dereg_noread_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE open_t (x int); CREATE TABLE closed_t (y text)")
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN; GRANT SELECT ON open_t TO {role}")
    try:
        binary = schema.pg_dump_binary(admin.dialect.server_version_info[0] * 10000)
        if binary is None:
            pytest.skip("no pg_dump for this server")
        dump = schema.PgDump(sa.make_url(pg_url).set(username=role), binary, None)
        with pytest.raises(BackupError) as refused:
            dump.wait()
        message = str(refused.value)
        assert "permission denied for table closed_t" in message and "grant it SELECT" in message
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}; DROP ROLE {role}")
        admin.dispose()


def test_a_postgresql_target_that_already_has_a_table_or_view_is_refused_by_name(pg_url):
    from dereg.backup.restore import refuse_existing_tables

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE SCHEMA "Other"; CREATE TABLE "Other"."T" (id int)')
        conn.exec_driver_sql("CREATE TABLE public.plain (id int); CREATE VIEW public.seen AS SELECT 1 AS one")
    engine.dispose()
    # nothing of these exists there: no refusal
    refuse_existing_tables(pg_url, [("public", "T"), ("Other", "plain"), ("absent", "T")], backup_id="bk-1")
    with pytest.raises(BackupError, match=r"already has table\(s\) 'Other.T', 'seen'.*Nothing was restored"):
        refuse_existing_tables(pg_url, [("Other", "T"), (None, "seen"), ("public", "nope")], backup_id="bk-1")
    with pytest.raises(BackupError, match="already has table.*'plain'"):
        refuse_existing_tables(pg_url, ["plain"], backup_id="bk-1")


_ONE_TABLE = "CREATE TABLE public.t (id integer NOT NULL, v text);\n"
_ROWS = [b"%d\tv%d\n" % (i, i) for i in range(1, 3001)]  # some 15 heap pages


def _restore_one_table(pg_url, lines: list[bytes], pre: str = _ONE_TABLE, manifest_lines=None, **kw):
    """Restore table t from `lines` (one chunk each) on two connections; the manifest describes
    `manifest_lines` (default: the same bytes)."""
    plaintext = b"".join(manifest_lines or lines)
    manifest = {"tables": {"t": _spec("public", "t", plaintext, ["id", "v"])}}
    problems: list[str] = []
    results = pgcopy.restore_with_schema(
        pg_url,
        manifest,
        {"pre-data": pre, "post-data": ""},
        ["t"],
        lambda n, s: iter(lines),
        problems=problems,
        **kw,
    )
    return results["t"], problems


@pytest.mark.parametrize("kept", [10_000, None], ids=["sampled", "whole"])
@pytest.mark.parametrize("where", ["none", "first", "last"])
def test_the_first_and_last_rows_as_the_target_writes_them_back_must_be_the_backups(
    pg_url, monkeypatch, where, kept
):
    """The rows loaded are hashed as COPY takes them; the target's own count of what it stored and
    its first and last rows (all of them when the whole stream was kept), written back by the
    server, must match too: a value stored other than it was sent (here `01` into an integer
    column, which comes back as `1`) is a mismatch, and the restore leaves nothing behind."""
    monkeypatch.setattr(pgcopy, "JOBS", 2)
    if kept is not None:  # the table's some 33 KB of rows are more than is kept of its end
        monkeypatch.setattr(pgcopy._CheckedFeed, "TAIL_BYTES", kept)
    lines = list(_ROWS)
    if where != "none":
        at = 0 if where == "first" else -1
        lines[at] = b"0" + lines[at]
    before = _objects(pg_url)
    result, problems = _restore_one_table(pg_url, lines)
    if where == "none":
        assert result["ok"] and result["restored_rows"] == 3000 and not problems, (result, problems)
    else:
        assert not result["ok"] and any("content hash" in p for p in problems), problems
        assert _objects(pg_url) == before


def test_rows_the_target_does_not_store_are_counted_by_the_server(pg_url, monkeypatch):
    """A trigger of the schema that drops a row on its way in: the rows COPY took are all there
    and hash as the backup's, but the server stored one fewer, and says so."""
    monkeypatch.setattr(pgcopy, "JOBS", 2)
    pre = _ONE_TABLE + (
        "CREATE FUNCTION public.drop_100() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN IF NEW.id = 100 THEN RETURN NULL; END IF; RETURN NEW; END$$;\n"
        "CREATE TRIGGER drop_100 BEFORE INSERT ON public.t FOR EACH ROW EXECUTE FUNCTION public.drop_100();\n"
    )
    result, problems = _restore_one_table(pg_url, _ROWS, pre=pre)
    assert not result["ok"] and result["restored_rows"] == 2999, result
    assert any("2999 rows restored, the manifest says 3000" in p for p in problems), problems


@pytest.mark.parametrize("middle", [False, True])
def test_without_a_sample_the_whole_table_is_read_back(pg_url, monkeypatch, middle):
    """When the last rows cannot be kept to compare (here: only the last line is kept), the whole
    table is read back and hashed, which also finds a value stored differently in the middle."""
    monkeypatch.setattr(pgcopy, "JOBS", 2)
    monkeypatch.setattr(pgcopy._CheckedFeed, "TAIL_BYTES", 1)
    lines = list(_ROWS)
    if middle:
        lines[99] = b"0" + lines[99]
    result, problems = _restore_one_table(pg_url, lines)
    assert result["ok"] is not middle, (result, problems)
    assert result["restored_rows"] == 3000


@pytest.mark.parametrize("full_check", [False, True])
def test_a_full_check_reads_back_what_the_sample_leaves_out(pg_url, monkeypatch, full_check):
    """A value the target stores other than it was sent, in the middle of the table: the default
    check of a restore on several connections (bytes loaded, the server's count, the first and last
    rows) does not see it; `full_check` (`dereg restore --full-check`) reads every row back and does."""
    monkeypatch.setattr(pgcopy, "JOBS", 2)
    monkeypatch.setattr(pgcopy._CheckedFeed, "TAIL_BYTES", 10_000)  # less than the table's rows
    lines = list(_ROWS)
    lines[1500] = b"0" + lines[1500]
    before = _objects(pg_url)
    result, problems = _restore_one_table(pg_url, lines, full_check=full_check)
    if full_check:
        assert not result["ok"] and any("content hash" in p for p in problems), problems
        assert _objects(pg_url) == before
    else:
        assert result["ok"] and not problems, (result, problems)
    assert result["restored_rows"] == 3000
