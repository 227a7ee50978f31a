"""A full scan of a huge PostgreSQL cell: COPY's reader cuts the line across blocks (never inside
an escape or a UTF-8 character) and the scan finds what it finds in the same value as short
lines (issue 16, issue 18 item 8)."""

from __future__ import annotations

import sqlalchemy as sa

from dereg.classify.engine import classify_table
from dereg.classify.scanner import scan_block
from dereg.dialects import dialect_for
from dereg.inventory.sql import inventory_source

REMARK = "退费申请\\人 手机13812345678，\t邮箱zhang.wei@example.com\n身份证11010519491231002X；"


def test_copy_blocks_cut_a_huge_line_without_changing_its_text(pg_url):
    engine = sa.create_engine(pg_url)
    value = REMARK * 20_000  # about 1.5 MB with backslashes, tabs, newlines and CJK
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id int PRIMARY KEY, remark text)")
        conn.execute(sa.text("INSERT INTO notes VALUES (1, :v), (2, 'short 13812345678')"), {"v": value})
    table = sa.table("notes", sa.column("id"), sa.column("remark"))
    dialect = dialect_for(engine)
    whole = list(dialect.text_blocks(engine, table, ["id", "remark"], block_chars=64 << 20, batch=100))
    cut = list(dialect.text_blocks(engine, table, ["id", "remark"], block_chars=10_007, batch=100))
    assert len(whole) == 1 and len(cut) >= 2
    assert "".join(cut) == whole[0]
    # the reader hands over at most 1 MiB at a time: no piece holds the whole cell
    assert max(len(piece.encode()) for piece in cut) <= (1 << 20) + 10_007

    info = next(t for t in inventory_source(engine, "s").tables if t.name == "notes")
    findings = {f.column: f for f in classify_table(engine, info, full=True)}
    remark = findings["remark"]
    assert set(remark.categories) >= {"cn_mobile", "email", "cn_resident_id"}
    assert remark.values_checked == 2
    # the same hits as the value's text scanned alone
    single = [(c, v) for _, _, c, v in scan_block(whole[0])]
    assert len(single) == 3 * 20_000 + 1
    engine.dispose()


def test_a_cell_over_the_threshold_is_read_in_slices_with_the_same_hits(pg_url, monkeypatch):
    from dereg.dialects import postgresql

    monkeypatch.setattr(postgresql, "HUGE_CELL_BYTES", 50_000)
    monkeypatch.setattr(postgresql, "HUGE_CELL_SLICE", 7_001)  # cuts identifiers and characters
    engine = sa.create_engine(pg_url)
    value = REMARK * 2_000  # about 150 KB: over the threshold
    with engine.begin() as conn:
        conn.execute(sa.text('CREATE TABLE "n%tes" (id int PRIMARY KEY, remark text, "t%g" varchar(40))'))
        conn.execute(
            sa.text(
                """INSERT INTO "n%tes" VALUES (1, :v, 'x'), (2, 'short 13812345678', :v2), (3, NULL, NULL)"""
            ),
            {"v": value, "v2": "zhang.wei@example.com"},
        )
    table = sa.table("n%tes", sa.column("id"), sa.column("remark"), sa.column("t%g"))
    blocks = list(
        dialect_for(engine).text_blocks(engine, table, ["id", "remark", "t%g"], block_chars=10_007, batch=100)
    )
    text = "".join(blocks)
    lines = text.split("\n")
    # the huge cell left the COPY (its row's field is empty) and came last, on its own line
    assert lines[0] == "1\t\\N\tx" and lines[3].startswith("\t") and lines[3].endswith("\t")
    assert max(len(b) for b in blocks) <= 10_007 + 7_001
    alone = [(c, v) for _, _, c, v in scan_block(value.replace("\t", " ").replace("\n", " ") + "\n")]
    huge_line_start = len("\n".join(lines[:3])) + 1
    assert [(c, v) for s, f, c, v in scan_block(text) if s == huge_line_start] == alone
    assert len(alone) == 3 * 2_000
    info = next(t for t in inventory_source(engine, "s").tables if t.name == "n%tes")
    findings = {f.column: f for f in classify_table(engine, info, full=True)}
    assert findings["remark"].values_checked == 2 and findings["remark"].matches == 2
    engine.dispose()


def test_a_scan_reads_a_table_from_its_start_whatever_runs_beside(pg_url):
    """PostgreSQL starts a sequential scan of a large table where another scan of it is reading
    (synchronize_seqscans): the scan's COPY turns that off in its own transaction, so the first
    examples it reports do not depend on what else reads the table; the pooled connection gets
    the server's setting back."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE VIEW probe AS SELECT 1 AS id, current_setting('synchronize_seqscans') AS sync"
        )
    table = sa.table("probe", sa.column("id"), sa.column("sync"))
    blocks = list(
        dialect_for(engine).text_blocks(engine, table, ["id", "sync"], block_chars=1 << 20, batch=10)
    )
    assert blocks == ["1\toff\n"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronize_seqscans").scalar_one() == "on"
    engine.dispose()
