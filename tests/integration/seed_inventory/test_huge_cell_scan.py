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
