"""The per-subject key logic without servers: the GGM tree, puncturing, the wrapped key set, the seal
spec taken from a plan, the markers, and a row sealed and opened again."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest

from dereg.backup import subjectkeys as sk
from dereg.errors import BackupError


def _leaf(root: bytes, depth: int, i: int) -> bytes:
    node = root
    for level in range(depth - 1, -1, -1):
        node = sk.children(node)[(i >> level) & 1]
    return node


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8, 9, 100])
def test_expand_derives_every_leaf_as_a_walk_from_the_root_would(count):
    root = os.urandom(32)
    depth = sk.depth_for(count)
    assert 2**depth >= count and (depth == 1 or 2 ** (depth - 1) < count)
    leaves, present = sk.expand([(0, 0, root)], depth, count)
    assert all(present) and len(present) == count
    assert [bytes(leaves[32 * i : 32 * i + 32]) for i in range(count)] == [
        _leaf(root, depth, i) for i in range(count)
    ]
    assert len({bytes(leaves[32 * i : 32 * i + 32]) for i in range(count)}) == count


def test_puncturing_removes_exactly_one_leaf_and_is_idempotent():
    root, count = os.urandom(32), 37
    depth = sk.depth_for(count)
    full, _ = sk.expand([(0, 0, root)], depth, count)
    nodes = sk.puncture([(0, 0, root)], depth, 5)
    assert root not in {v for _, _, v in nodes} and len(nodes) == depth  # the co-path
    nodes = sk.puncture(nodes, depth, 30)
    leaves, present = sk.expand(nodes, depth, count)
    assert [i for i in range(count) if not present[i]] == [5, 30]
    for i in range(count):
        if present[i]:
            assert leaves[32 * i : 32 * i + 32] == full[32 * i : 32 * i + 32]
    assert sk.puncture(nodes, depth, 5) is None  # already shredded: nothing to do
    # no node left can derive a punctured leaf
    for level, index, _value in nodes:
        assert 5 >> (depth - level) != index and 30 >> (depth - level) != index


def test_key_set_is_wrapped_under_the_data_key_and_refuses_another():
    data_key = os.urandom(32)
    key_set = sk.KeySet("bk-1", 3, 6, sk.puncture([(0, 0, os.urandom(32))], 3, 2), shredded=1)
    body = key_set.to_json(data_key)
    assert body["shredded"] == 1 and all(len(w) == 56 for _, _, w in body["nodes"])  # 40 bytes, base64
    assert not any(v.hex() in str(body) for _, _, v in key_set.nodes)
    back = sk.KeySet.from_json(body, data_key)
    assert back.nodes == key_set.nodes and (back.depth, back.subjects) == (3, 6)
    with pytest.raises(BackupError, match="does not unwrap"):
        sk.KeySet.from_json(body, os.urandom(32))
    with pytest.raises(BackupError, match="does not unwrap"):
        sk.KeySet.from_json({**body, "backup_id": "bk-2"}, data_key)


def test_markers_by_type():
    assert sk.marker_for({"pg_type": "character varying(40)"}) == "#shredded"
    assert sk.marker_for({"pg_type": "character varying(4)"}) == "#shr"
    assert sk.marker_for({"pg_type": "text"}) == "#shredded"
    assert sk.marker_for({"pg_type": "date"}) == "-infinity"
    assert sk.marker_for({"pg_type": "numeric(12,2)"}) == "NaN"
    assert sk.marker_for({"pg_type": "my_enum"}) is None


def test_spec_from_plan_seals_linked_personal_columns_but_not_keys_or_kept_tables():
    from dereg.erase.plan import ErasurePlan, TableAction

    hop = {
        "columns": ["student_id"],
        "table": "students",
        "schema": None,
        "name": "students",
        "ref_columns": ["id"],
    }
    plan = ErasurePlan(
        "c",
        "db",
        "postgresql",
        "students",
        [
            TableAction("students", "delete", 2, ["name"], ["id"], "", name="students"),
            TableAction("notes", "delete", 2, ["body"], ["id"], "", name="notes", scope="linked", via=[hop]),
            TableAction("ledger", "keep", 2, [], ["id"], "", name="ledger", scope="linked", via=[hop]),
            TableAction("courses", "keep", 2, [], ["id"], "", name="courses"),
        ],
    )
    personal = {
        "students": ["id", "name"],
        "notes": ["student_id", "body"],
        "ledger": ["payer"],
        "courses": ["x"],
    }
    spec = sk.spec_from_plan(plan, personal)
    assert spec.subject_key == "id"
    assert {t: s.columns for t, s in spec.tables.items()} == {"students": ["name"], "notes": ["body"]}
    assert sk.is_direct(spec, spec.tables["notes"].hops)
    assert sk.link_expression(spec, "t", spec.tables["notes"].hops) == 't."student_id"::text'
    # a table the subjects refer to: its own key, looked up among the subjects' links, lowest subject last
    back = [{**hop, "columns": ["id"], "ref_columns": ["guardian_id"], "direction": "referenced"}]
    assert not sk.is_direct(spec, back)
    assert sk.mapping_sql(spec, back) == (
        'COPY (SELECT dereg_h0."guardian_id"::text, dereg_h0."id"::text FROM "students" dereg_h0 '
        'ORDER BY dereg_h0."id" DESC) TO STDOUT'
    )
    plan.tables[0].key = ["a", "b"]
    assert "one-column key" in sk.spec_from_plan(plan, personal)


def test_a_sealed_row_opens_with_its_key_and_is_null_or_marked_without_it():
    spec = sk.SealSpec("students", None, "students", "id", {"students": sk.SealedTable(["name", "born"], [])})
    sealer = sk.Sealer(spec, "bk-1")
    sealer.refs = [b"10", b"11"]
    sealer.ordinal = {b"10": 0, b"11": 1}
    sealer.key_set = sk.KeySet("bk-1", 1, 2, [(0, 0, os.urandom(32))])
    sealer.leaves, _ = sk.expand(sealer.key_set.nodes, 1, 2)
    sealer.table_number = {"students": 0}
    sealer.maps = {"students": sealer.ordinal}
    sealer.ciphers = [None, None]
    sealer.sealed = {"students": {"columns": ["name", "born"], "markers": {"name": "#shredded"}}}
    plain = b"10\t\xe6\x9d\x8e\t2016-04-11\tx\n11\tB\t\\N\ty\n12\tC\t2017-01-01\tz\n"
    raw = io.BytesIO()
    writer = sk._SealingWriter(sealer, "students", ["id", "name", "born", "other"], raw)
    source = b"".join(line + b"\t" + line.split(b"\t")[0] + b"\n" for line in plain.split(b"\n")[:-1])
    writer.write(source[:7])  # COPY hands over blocks that end anywhere
    writer.write(source[7:])
    writer.finish()
    stored = raw.getvalue()
    assert writer.sealed_rows == 2 and writer.plain.hexdigest() == hashlib.sha256(plain).hexdigest()
    assert "李".encode() not in stored and b"2016-04-11" not in stored
    assert stored.split(b"\n")[2].endswith(b"\\N")  # ref 12 is no subject: not sealed
    # the link read from the row's own field (COPY as a plain backup runs it) stores the same bytes
    sealer.ciphers = [None, None]
    own = io.BytesIO()
    writer = sk._SealingWriter(sealer, "students", ["id", "name", "born", "other"], own, link=0)
    writer.write(plain[:9])
    writer.write(plain[9:])
    writer.finish()
    assert own.getvalue() == stored and writer.plain.hexdigest() == hashlib.sha256(plain).hexdigest()
    typed = [{"name": "id", "pg_type": "integer"}, {"name": "name", "pg_type": "text"}]
    assert sk.own_link(spec, [], typed) == 0
    # character(n)::text drops the padding COPY writes: such a link goes through the extra column
    assert sk.own_link(spec, [], [{"name": "id", "pg_type": "character(4)"}]) is None

    columns = [{"name": n} for n in ("id", "name", "born", "other")]
    spec_entry = {
        "columns": columns,
        "sealed": sealer.sealed["students"],
        "sealed_sha256": hashlib.sha256(stored).hexdigest(),
        "sha256": hashlib.sha256(plain).hexdigest(),
    }
    manifest = {"backup_id": "bk-1", "table_order": ["students"], "version": 6}
    problems: list[str] = []
    opened = sk.Unsealer(manifest, sealer.key_set, sealer.refs)
    assert (
        b"".join(opened.wrap("students", dict(spec_entry), iter([stored[:5], stored[5:]]), problems)) == plain
    )
    assert problems == [] and opened.shredded_rows == {}

    shredded = sk.KeySet("bk-1", 1, 2, sk.puncture(sealer.key_set.nodes, 1, 0))
    entry = dict(spec_entry)
    opened = sk.Unsealer(manifest, shredded, sealer.refs)
    out = b"".join(opened.wrap("students", entry, iter([stored]), problems))
    assert out == b"10\t#shredded\t\\N\tx\n11\tB\t\\N\ty\n12\tC\t2017-01-01\tz\n"
    assert problems == [] and opened.shredded_rows == {"students": 1}
    assert entry["sha256"] == hashlib.sha256(out).hexdigest()  # what the restore checks the database against

    # version 6 rows carry no tag of their own: the stored stream's hash (and in a backup, each
    # chunk's GCM tag under the data key) is what catches a change
    tampered = stored.replace(b"1:", b"0:", 1)  # row 11's ciphertext claimed for subject 10
    opened = sk.Unsealer(manifest, sealer.key_set, sealer.refs)
    b"".join(opened.wrap("students", dict(spec_entry), iter([tampered]), problems))
    assert any("sealed_sha256" in p for p in problems)


def test_a_version_5_sealed_row_still_opens():
    """Version 5 sealed each row with AES-GCM, its tag and associated data `dereg-subject/5|...`; a
    restore of such a backup opens it (built here as the version 5 spec says)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key_set = sk.KeySet("bk-5", 1, 2, [(0, 0, os.urandom(32))])
    leaves, _ = sk.expand(key_set.nodes, 1, 2)
    plain = b"10\tAnn\t2016-04-11\n11\tBo\t\\N\n"
    lines = []
    for line_no, (ref, secret) in enumerate([(b"10", b"Ann\t2016-04-11"), (b"11", b"Bo\t\\N")]):
        n = int(ref) - 10
        nonce = (0).to_bytes(4, "big") + line_no.to_bytes(8, "big")
        sealed = AESGCM(bytes(leaves[32 * n : 32 * n + 32])).encrypt(
            nonce, secret, b"dereg-subject/5|bk-5|students|" + ref
        )
        lines.append(ref + b"\t\\N\t\\N\t%d:" % n + base64.b64encode(sealed) + b"\n")
    stored = b"".join(lines)
    entry = {
        "columns": [{"name": n} for n in ("id", "name", "born")],
        "sealed": {"columns": ["name", "born"], "markers": {}},
        "sealed_sha256": hashlib.sha256(stored).hexdigest(),
        "sha256": hashlib.sha256(plain).hexdigest(),
    }
    manifest = {"backup_id": "bk-5", "table_order": ["students"], "version": 5}
    problems: list[str] = []
    opened = sk.Unsealer(manifest, key_set, [b"10", b"11"])
    assert b"".join(opened.wrap("students", dict(entry), iter([stored]), problems)) == plain
    assert problems == []
    # its tag still catches a row claimed for another subject
    opened = sk.Unsealer(manifest, key_set, [b"10", b"11"])
    b"".join(opened.wrap("students", dict(entry), iter([stored.replace(b"1:", b"0:", 1)]), problems))
    assert any("fail authentication" in p for p in problems)
