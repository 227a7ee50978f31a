"""Per-subject keys (backup format versions 5 and 6): one customer crypto-shredded inside a locked backup.

The personal columns of every row that belongs to a subject (the subject table's rows, and the rows
the erasure plan links to them) are sealed with AES-256 (CTR since version 6, GCM with a tag per row
in version 5) under that subject's own key. The keys are the leaves of a GGM tree (keyed BLAKE2b-512
splits a node into its two children) whose root is fresh for every backup; the *key set* (the tree nodes that still cover live leaves) is wrapped
under a key derived from the backup's data key and kept apart from the ciphertext: in the
compliance store and in an unlocked escrow object. Shredding one subject replaces the node that
covers its leaf by the siblings along the path (the co-path): every other key stays derivable,
that one is gone from every copy. Layout and reasoning: docs/backup-format.md, "Per-subject keys".

A row's personal fields are replaced by `\\N` in the stored COPY text, and one extra last field
carries `<ordinal>:<base64(AES-256-CTR ciphertext)>` (or `\\N` for a row of no subject); version 5
used AES-GCM with a 16-byte tag per row, which a restore still opens. The `_subjects` stream (sealed
under the data key) lists the subjects' refs in ordinal order.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import io
import json
import operator
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dereg.backup.codec import FORMAT_VERSION, GGM_VERSION, SUBJECT_CTR_VERSION, open_sealed, whole_lines
from dereg.errors import BackupError

SCHEME = "ggm-blake2b512/aes-256-gcm"
#: how a row's sealed fields are encrypted under its subject's key (version 6; informative: the
#: manifest's version decides)
ROW_CIPHER = "AES-256-CTR, counter blocks nonce || 00000002... (AES-GCM without tag), base64"
GGM_PERSON = b"dereg-ggm"
KEY_SET_FORMAT = "dereg-subject-keys"
#: the artifact (company, run = backup id, name) that holds a backup's wrapped key set in the store
KEY_SET_ARTIFACT = "subject_keys"
SUBJECTS_FOLDER = "subjects"
NULL = b"\\N"
#: what a NOT NULL sealed column holds after its subject was shredded, by PostgreSQL type (COPY
#: text); a text column gets MARKER_TEXT cut to its length. Other NOT NULL types are not sealed.
MARKER_TEXT = "#shredded"
_MARKERS = {
    "date": "-infinity",
    "timestamp without time zone": "-infinity",
    "timestamp with time zone": "-infinity",
    "numeric": "NaN",
    "double precision": "NaN",
    "real": "NaN",
    "smallint": "0",
    "integer": "0",
    "bigint": "0",
    "boolean": "f",
    "bytea": "\\\\x",
    "json": "null",
    "jsonb": "null",
}
_TEXT = ("text", "character varying", "character", "citext")


# --- the GGM tree -------------------------------------------------------------------------------
def children(node: bytes) -> tuple[bytes, bytes]:
    """A node's two children: keyed BLAKE2b-512 (key = the node, empty message, personalisation
    `dereg-ggm`), left = the first 32 bytes, right = the last 32."""
    out = hashlib.blake2b(key=node, digest_size=64, person=GGM_PERSON).digest()
    return out[:32], out[32:]


def depth_for(subjects: int) -> int:
    """Levels below the root: the smallest d >= 1 with 2**d >= subjects."""
    return max(1, (max(subjects, 1) - 1).bit_length())


def expand(nodes: Iterable[tuple[int, int, bytes]], depth: int, count: int) -> tuple[bytearray, bytearray]:
    """Every leaf 0..count-1 the nodes (level, index, value) cover: (leaves, 32 bytes each, in one
    buffer; present, one byte per leaf, 1 when derivable)."""
    leaves, present = bytearray(32 * count), bytearray(count)
    blake2b = hashlib.blake2b
    for level, index, value in nodes:
        first = index << (depth - level)
        if first >= count:
            continue
        # a layer as one buffer of 32-byte nodes: the 64-byte digests of a layer, concatenated, are
        # the next layer's nodes in order (left child, right child, ...)
        layer = value
        for below in range(depth - level - 1, -1, -1):
            need = min(2 * (len(layer) // 32), -(-(count - first) // (1 << below)))
            layer = b"".join(
                blake2b(key=layer[at : at + 32], digest_size=64, person=GGM_PERSON).digest()
                for at in range(0, len(layer), 32)
            )[: 32 * need]
        width = len(layer) // 32
        leaves[32 * first : 32 * (first + width)] = layer
        present[first : first + width] = b"\x01" * width
    return leaves, present


def puncture(
    nodes: list[tuple[int, int, bytes]], depth: int, leaf: int
) -> list[tuple[int, int, bytes]] | None:
    """The key set without `leaf`: the node covering it replaced by the siblings on the path down
    to it. None when no node covers it (already shredded)."""
    for pos, (level, index, value) in enumerate(nodes):
        if leaf >> (depth - level) != index:
            continue
        rest = nodes[:pos] + nodes[pos + 1 :]
        for lv in range(level + 1, depth + 1):
            left, right = children(value)
            bit = (leaf >> (depth - lv)) & 1
            here = leaf >> (depth - lv)
            value, sibling = (right, left) if bit else (left, right)
            rest.append((lv, here ^ 1, sibling))
        return sorted(rest)
    return None


# --- the key set: wrapped, stored and escrowed ----------------------------------------------------
def _node_wrap_key(data_key: bytes, backup_id: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"dereg-backup subject-keys|{backup_id}".encode(),
    ).derive(data_key)


@dataclasses.dataclass
class KeySet:
    """The GGM nodes that still cover live subject keys of one backup (plain values in memory only)."""

    backup_id: str
    depth: int
    subjects: int
    nodes: list[tuple[int, int, bytes]]
    shredded: int = 0

    def to_json(self, data_key: bytes) -> dict[str, Any]:
        wrap = _node_wrap_key(data_key, self.backup_id)
        return {
            "format": KEY_SET_FORMAT,
            "version": 1,
            "backup_id": self.backup_id,
            "scheme": SCHEME,
            "depth": self.depth,
            "subjects": self.subjects,
            "shredded": self.shredded,
            "wrap": "AES-KW (RFC 3394) under HKDF-SHA256(data key, info 'dereg-backup subject-keys|<backup_id>')",
            "nodes": [
                [lv, ix, base64.b64encode(aes_key_wrap(wrap, v)).decode("ascii")] for lv, ix, v in self.nodes
            ],
        }

    @classmethod
    def from_json(cls, body: dict[str, Any], data_key: bytes) -> KeySet:
        if body.get("format") != KEY_SET_FORMAT or body.get("version") != 1:
            raise BackupError(
                f"the subject key set of backup {body.get('backup_id')} is not a version 1 key set"
            )
        wrap = _node_wrap_key(data_key, body["backup_id"])
        try:
            nodes = [
                (int(lv), int(ix), aes_key_unwrap(wrap, base64.b64decode(w))) for lv, ix, w in body["nodes"]
            ]
        except (InvalidUnwrap, ValueError, TypeError):
            raise BackupError(
                f"the subject key set of backup {body['backup_id']} does not unwrap under its data key: it "
                "was altered or belongs to another backup"
            ) from None
        return cls(
            body["backup_id"], int(body["depth"]), int(body["subjects"]), nodes, int(body.get("shredded", 0))
        )


def escrow_key(location, backup_id: str) -> str:
    """The key set's escrow object: beside the data key's, never under Object Lock."""
    return location.key("_escrow", f"{backup_id}.subject-keys.json")


def finish_subjects(session, backup_id: str, refs: list[bytes], key_set, version: int):
    """The end of a per-subject backup (versions 5 to 7): the `_subjects` stream of references (sealed
    under the data key) and the key set (store and escrow, never locked); returns the stream."""
    from dereg.backup.codec import CHUNK_BYTES
    from dereg.backup.writer import ChunkStream

    stream = ChunkStream(
        "_subjects",
        backup_id=backup_id,
        data_key=session.data_key,
        uploader=session.uploader,
        location=session.location,
        chunk_bytes=CHUNK_BYTES,
        folder=SUBJECTS_FOLDER,
        aad=lambda *a: subjects_aad(*a, version=version),
    )
    stream.write(b"\n".join(refs) + b"\n" if refs else b"")  # (at the end of the backup: joined in C)
    stream.finish()
    save_key_set(
        session.store,
        session.location,
        session.client,
        session.context["company_id"],
        key_set,
        session.data_key,
    )
    return stream


def save_key_set(store, location, client, company_id: str, key_set, data_key: bytes) -> str | None:
    """Write a key set (a `KeySet` or a `groupkeys.GroupKeySet`: its `to_json` under the data key) to the
    store, replacing the old one, and as a new escrow version (never locked); returns the new escrow
    version id (None on an unversioned bucket)."""
    from dereg.evidence.artifacts import put_artifact

    body = key_set.to_json(data_key)
    put_artifact(store, company_id, key_set.backup_id, KEY_SET_ARTIFACT, body)
    put = client.put_object(
        Bucket=location.bucket,
        Key=escrow_key(location, key_set.backup_id),
        Body=json.dumps(body).encode(),
        ContentType="application/json",
    )
    return put.get("VersionId")


def load_key_set_body(store, client, location, company_id: str, backup_id: str) -> dict[str, Any] | None:
    """The wrapped key set: the store's copy, else the escrow object's; None when neither exists."""
    from botocore.exceptions import ClientError

    from dereg.errors import GateError
    from dereg.evidence.artifacts import get_artifact

    try:
        return get_artifact(store, company_id, backup_id, KEY_SET_ARTIFACT)
    except GateError:
        pass
    try:
        obj = client.get_object(Bucket=location.bucket, Key=escrow_key(location, backup_id))
    except ClientError as exc:  # only a missing object means "no escrow copy"; a refusal is raised
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return json.loads(obj["Body"].read())


# --- what is sealed ---------------------------------------------------------------------------------
@dataclasses.dataclass
class SealedTable:
    """One table whose subject rows are sealed: its personal columns, and how a row reaches its
    subject (the plan's hops, first hop first; empty for the subject table itself)."""

    columns: list[str]
    hops: list[dict[str, Any]]


@dataclasses.dataclass
class SealSpec:
    """What a backup seals: the subject table (manifest key) and its one-column key, and the tables."""

    subject_table: str
    subject_schema: str | None
    subject_name: str
    subject_key: str
    tables: dict[str, SealedTable]
    #: why some personal data is left out (table.column -> reason), recorded in the manifest
    unsealed: dict[str, str] = dataclasses.field(default_factory=dict)


def spec_to_json(spec: SealSpec) -> dict[str, Any]:
    """A seal spec as the JSON a backup's sealed head record carries to its part task."""
    return dataclasses.asdict(spec)


def spec_from_json(body: dict[str, Any]) -> SealSpec:
    return SealSpec(
        **{
            **body,
            "tables": {name: SealedTable(**table) for name, table in (body.get("tables") or {}).items()},
        }
    )


def spec_from_plan(plan, personal: dict[str, list[str]]) -> SealSpec | str:
    """The seal spec of an erasure plan (`personal`: table -> personal columns from the
    classification). Rows the plan deletes or pseudonymizes, in the subject table and the tables
    linked to it, are sealed; a table kept as it is (the law keeps its personal data) is not.
    Returns the reason instead when the plan cannot give per-subject keys."""
    subject = plan.action(plan.subject_table)
    if len(subject.key) != 1:
        return (
            f"the subject table {plan.subject_table} has a {len(subject.key)}-column primary key; per-subject "
            "keys need a one-column key"
        )
    tables: dict[str, SealedTable] = {}
    for action in plan.tables:
        if action.partitioned or action.action == "keep":
            continue
        linked = action.table == plan.subject_table or (action.scope == "linked" and action.via)
        if not linked:
            continue
        keys = set(action.key) | {c for h in action.via[:1] for c in h["columns"]}
        cols = [c for c in personal.get(action.table, []) if c not in keys]
        if cols:
            tables[action.table] = SealedTable(cols, [dict(h) for h in action.via])
    return SealSpec(plan.subject_table, subject.schema, subject.name or subject.table, subject.key[0], tables)


def marker_for(column: dict[str, Any]) -> str | None:
    """The COPY text a NOT NULL column gets when its subject is shredded; None: no marker for its type."""
    typ = str(column.get("pg_type") or "")
    base = typ.split("(")[0].strip()
    if base in _TEXT:
        length = typ[len(base) :].strip("() ")
        return MARKER_TEXT[: int(length)] if length.isdigit() else MARKER_TEXT
    return _MARKERS.get(base)


def sealed_columns(
    spec: SealSpec, name: str, table: SealedTable, columns: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The manifest's `sealed` entry of a table (its sealed columns and their markers), or None when
    none can be sealed: a generated column is not stored, and a NOT NULL column of a type with no
    marker is left out (recorded in `spec.unsealed`)."""
    by_name = {c["name"]: c for c in columns}
    positions, markers = [], {}
    for col in table.columns:
        c = by_name.get(col)
        if c is None or c.get("generated"):
            continue
        if c.get("not_null"):
            mark = marker_for(c)
            if mark is None:
                spec.unsealed[f"{name}.{col}"] = (
                    f"NOT NULL column of type {c.get('pg_type')} has no shredded marker"
                )
                continue
            markers[col] = mark
        positions.append(col)
    return {"columns": positions, "markers": markers} if positions else None


# --- backup side: sealing rows while COPY streams them ---------------------------------------------
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str | None, name: str) -> str:
    return (_quote(schema) + "." if schema else "") + _quote(name)


def _as_text(alias: str, columns: list[str]) -> str:
    if len(columns) == 1:
        return f"{alias}.{_quote(columns[0])}::text"
    return "ROW(" + ", ".join(f"{alias}.{_quote(c)}" for c in columns) + ")::text"


def is_direct(spec: SealSpec, hops: list[dict[str, Any]]) -> bool:
    """Whether a row's own column is its subject ref (the subject table, or one hop to its key)."""
    return not hops or (
        len(hops) == 1
        and hops[0].get("direction") != "referenced"
        and list(hops[0]["ref_columns"]) == [spec.subject_key]
    )


def link_expression(spec: SealSpec, table_alias: str, hops: list[dict[str, Any]]) -> str:
    """SQL of the extra column COPY adds to each row: its subject ref when `is_direct`, else the
    value of its first link (looked up in `mapping_sql`'s pairs). The table is read as a plain
    backup reads it (no join), so its physical order, and the hash of its plain rows, stay the same."""
    if not hops:
        return _as_text(table_alias, [spec.subject_key])
    return _as_text(table_alias, list(hops[0]["columns"]))


#: types whose COPY field is byte for byte their `::text` (what the subjects stream and the link maps
#: hold); not e.g. `character(n)`, whose `::text` drops the padding, or `boolean` (`t` / `true`)
_LINK_AS_FIELD = {"smallint", "integer", "bigint", "text", "character varying", "uuid"}


def own_link(spec: SealSpec, hops: list[dict[str, Any]], columns: list[dict[str, Any]]) -> int | None:
    """The position of the table's own column whose COPY field is the row's link value (the subject
    key of the subject table, or a one-column first link), when its type writes it as its `::text`;
    else None (COPY then adds `link_expression` as an extra column)."""
    name = spec.subject_key if not hops else (hops[0]["columns"][0] if len(hops[0]["columns"]) == 1 else None)
    for position, column in enumerate(columns):
        if column["name"] == name and not column.get("generated"):
            base = str(column.get("pg_type") or "").split("(")[0].strip()
            return position if base in _LINK_AS_FIELD else None
    return None


def scanned(qualified: str, relkind: str) -> str:
    """What a sealed table's `SELECT` reads from: exactly the rows the plain backup's `COPY <table>
    TO` reads, so the same rows in the same order and the same hash. For a plain table (relkind
    `r`, a leaf partition included) that is its own rows only, `ONLY`: an inheritance parent's
    children are tables of their own, backed up (and hashed) on their own. A partitioned parent
    (`p`) is never sealed (its rows are stored in its partitions); other kinds are read whole, as
    the plain backup's query reads them."""
    return f"ONLY {qualified}" if relkind == "r" else qualified


def mapping_sql(spec: SealSpec, hops: list[dict[str, Any]]) -> str:
    """(first link's value as text, subject ref) along the chain, lowest subject last: a row that
    reaches several subjects (a guardian of siblings) is sealed under the lowest one's key."""
    froms, where = [], []
    previous = None
    for n, hop in enumerate(hops):
        alias = f"dereg_h{n}"
        froms.append(f"{_qualified(hop.get('schema'), hop.get('name') or hop['table'])} {alias}")
        if previous is not None:
            where += [
                f"{alias}.{_quote(rc)} = {previous}.{_quote(c)}"
                for c, rc in zip(hop["columns"], hop["ref_columns"], strict=True)
            ]
        previous = alias
    subject = f"{previous}.{_quote(spec.subject_key)}"
    return (
        f"COPY (SELECT {_as_text('dereg_h0', list(hops[0]['ref_columns']))}, {subject}::text "
        f"FROM {', '.join(froms)}{' WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY {subject} DESC) TO STDOUT"
    )


def subject_aad(backup_id: str, table: str, ref: bytes) -> bytes:
    return b"dereg-subject/5|" + backup_id.encode() + b"|" + table.encode() + b"|" + ref


def row_nonce(table_number: int, line: int) -> bytes:
    """12 bytes: the table's position in table_order (4, big-endian) and the row's line number (8):
    never twice under one subject key (every key is fresh for its backup)."""
    return struct.pack(">IQ", table_number, line)


def read_refs(cur, spec: SealSpec) -> list[bytes]:
    """The subjects' refs (the subject key as text) in key order, read on `cur` in the backup's
    snapshot: subject number n is the n-th. The ORDER BY names the table's column: the bare name
    would be the output column, the text, and sort as text (10 before 9) in a sort of its own, where
    the key's order is its index's (`mapping_sql`'s order too)."""
    out = io.BytesIO()
    key = _quote(spec.subject_key)
    cur.copy_expert(
        f"COPY (SELECT dereg_s.{key}::text FROM {_qualified(spec.subject_schema, spec.subject_name)} dereg_s "
        f"ORDER BY dereg_s.{key}) TO STDOUT",
        out,
    )
    data = out.getvalue()
    return data.split(b"\n")[:-1] if data else []


class Sealer:
    """Seals a backup's subject rows (PostgreSQL COPY path); made by `pgcopy.dump_tables` when the
    session carries a `SealSpec`, inside the backup's snapshot. Writes format version 6 (version 7
    seals by subject group instead: groupkeys.py); kept to write such backups for comparison."""

    version = GGM_VERSION

    def __init__(self, spec: SealSpec, backup_id: str):
        self.spec, self.backup_id = spec, backup_id
        self.refs: list[bytes] = []
        self.ordinal: dict[bytes, int] = {}
        self.leaves = bytearray()
        self.key_set: KeySet | None = None
        self.table_number: dict[str, int] = {}
        self.sealed: dict[str, dict[str, Any]] = {}
        #: per table: the extra column's value -> subject number
        self.maps: dict[str, dict[bytes, int]] = {}

    def prepare(
        self,
        cur,
        table_keys: list[str],
        columns_of: dict[str, list[dict[str, Any]]],
        qualified: dict[str, str] | None = None,
    ) -> None:
        """Read the subjects' refs in the snapshot, draw the tree's root, derive every leaf, and
        decide per table which columns are sealed (a NOT NULL column of a type with no marker is not).
        `qualified` (the tables' SQL names) is for the group sealer's group size: rows are sealed one
        by one here."""
        import os

        spec = self.spec
        self.refs = read_refs(cur, spec)
        self.ordinal = {r: i for i, r in enumerate(self.refs)}
        count = len(self.refs)
        depth = depth_for(count)
        root = os.urandom(32)
        self.key_set = KeySet(self.backup_id, depth, count, [(0, 0, root)])
        self.leaves, _ = expand(self.key_set.nodes, depth, count)
        self.ciphers: list[AESGCM | None] = [None] * count
        self.table_number = {k: n for n, k in enumerate(table_keys)}
        for name, table in spec.tables.items():
            if name not in columns_of:
                continue
            if is_direct(spec, table.hops):
                self.maps[name] = self.ordinal
            else:  # link value -> subject number, read in the snapshot (an index-free hash lookup)
                out = io.BytesIO()
                cur.copy_expert(mapping_sql(spec, table.hops), out)
                found: dict[bytes, int] = {}
                for pair in out.getvalue().split(b"\n")[:-1]:
                    value, _, ref = pair.partition(b"\t")
                    n = self.ordinal.get(ref)
                    if n is not None and value != NULL:
                        found[value] = n  # lowest subject last: it wins
                self.maps[name] = found
            entry = sealed_columns(spec, name, table, columns_of[name])
            if entry is not None:
                self.sealed[name] = entry

    def leaf(self, n: int) -> bytes:
        return bytes(self.leaves[32 * n : 32 * n + 32])

    def seals(self, key: str) -> bool:
        return key in self.sealed

    def copy_out(
        self, cur, key: str, qualified: str, columns: list[dict[str, Any]], raw, relkind: str = "r", psql=None
    ) -> tuple[int, str]:
        """COPY `key`'s rows, seal them into `raw` (the chunk stream); returns (sealed rows, SHA-256
        of the plain COPY text, as a plain backup hashes it). When the row's link value is one of
        its own columns (`own_link`), COPY reads the table exactly as a plain backup does; otherwise
        it adds the link value as an extra last column, which the sealing takes off."""
        from dereg.backup.pgcopy import READ_BLOCK

        hops = self.spec.tables[key].hops
        link = own_link(self.spec, hops, columns)
        if link is not None:
            names = ", ".join(_quote(c["name"]) for c in columns)
            sql = (
                f"COPY {qualified} ({names}) TO STDOUT"
                if relkind == "r"
                else f"COPY (SELECT {names} FROM {qualified}) TO STDOUT"
            )
        else:
            names = ", ".join(f"dereg_t.{_quote(c['name'])}" for c in columns)
            ref = link_expression(self.spec, "dereg_t", hops)
            sql = f"COPY (SELECT {names}, {ref} FROM {scanned(qualified, relkind)} dereg_t) TO STDOUT"
        writer = _SealingWriter(self, key, [c["name"] for c in columns], raw, link)
        buffered = io.BufferedWriter(writer, buffer_size=READ_BLOCK)
        cur.copy_expert(sql, buffered)
        buffered.flush()
        writer.finish()
        self.sealed[key]["rows"] = writer.sealed_rows
        return writer.sealed_rows, writer.plain.hexdigest()

    def table_entry(self, key: str, stream) -> dict[str, Any]:
        """What the manifest adds to a sealed table: the stored stream's hash and the sealing."""
        return {"sealed_sha256": stream.digest.hexdigest(), "sealed": dict(self.sealed[key])}

    def finish(self, session) -> dict[str, Any]:
        """Write the `_subjects` stream (sealed under the data key) and the key set (store and
        escrow, never locked); returns the manifest's `subject_keys` entry."""
        return self.manifest_entry(
            finish_subjects(session, self.backup_id, self.refs, self.key_set, self.version)
        )

    def manifest_entry(self, subjects_stream) -> dict[str, Any]:
        return {
            "enabled": True,
            "scheme": SCHEME,
            "subject_table": self.spec.subject_table,
            "subject_key": self.spec.subject_key,
            "subjects": len(self.refs),
            "depth": self.key_set.depth if self.key_set else 0,
            "row_cipher": ROW_CIPHER,
            # the number in each sealed row's nonce: the table's place in the order the tables were
            # read, which need not be `table_order` (see `Unsealer.number_for`)
            "table_numbers": {k: self.table_number[k] for k in self.sealed if k in self.table_number},
            "shredded_value": "NULL; a NOT NULL column gets `markers` (text: '#shredded' cut to the column's length)",
            "subjects_stream": {
                "rows": subjects_stream.newlines,
                "sha256": subjects_stream.digest.hexdigest(),
                "bytes": subjects_stream.size,
                "chunks": subjects_stream.chunks,
            },
            **({"unsealed": dict(self.spec.unsealed)} if self.spec.unsealed else {}),
        }


def subjects_aad(backup_id: str, name: str, index: int, last: bool, version: int = FORMAT_VERSION) -> bytes:
    """Associated data of a `_subjects` chunk: its own prefix, like the schema sections'."""
    return f"dereg-backup-subjects/{version}|{backup_id}|{index}|{1 if last else 0}".encode()


def _picker(positions: list[int]):
    """fields -> the tuple of the fields at `positions` (itemgetter returns a bare item for one)."""
    if len(positions) == 1:
        (only,) = positions
        return lambda fields: (fields[only],)
    return operator.itemgetter(*positions)


def ctr_crypt(cipher: AESGCM, nonce: bytes, data: bytes) -> bytes:
    """AES-256-CTR under the cipher's key, counter blocks `nonce || 00000002`, `nonce || 00000003`...
    (a 32-bit counter): AES-GCM's ciphertext without its tag, so one call of the Rust AES-GCM (about
    1 us) instead of building a CTR context per row (about 7). The same call decrypts."""
    return cipher.encrypt(nonce, data, None)[:-16]


class _SealingWriter(io.RawIOBase):
    """COPY text in (each line with its link value as its last field), sealed lines out. Runs under
    the GIL for every row of every sealed table, so a row costs a fixed handful of C calls: one
    split, two itemgetters, one AES call, one base64 and one %-format build the stored line."""

    def __init__(self, sealer: Sealer, key: str, names: list[str], raw, link: int | None = None):
        super().__init__()
        #: the position of the row's own field that is its link value; None: an extra last field
        self.link = link
        self.sealer, self.key, self.raw = sealer, key, raw
        info = sealer.sealed[key]
        positions = [names.index(c) for c in info["columns"]]
        kept = [i for i in range(len(names)) if i not in positions]
        self.secret_of, self.kept_of = _picker(positions), _picker(kept)
        # the stored line: kept fields as they are, sealed ones `\N`, then `<n>:<base64>`
        self.template = b"\t".join(b"%s" if i in kept else NULL for i in range(len(names))) + b"\t%d:%s"
        self.nonce_base = sealer.table_number[key] << 64
        self.plain = hashlib.sha256()
        self.carry = b""
        self.line = 0
        self.sealed_rows = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        block = self.carry + bytes(data)
        cut = block.rfind(b"\n") + 1
        self.carry = block[cut:]
        if cut:
            if self.link is None:
                self._lines(block[:cut].split(b"\n")[:-1])
            else:
                self.plain.update(block[:cut])  # the rows as COPY wrote them: the plain text
                self._own_lines(block[:cut].split(b"\n")[:-1])
        return len(data)

    def _own_lines(self, lines: list[bytes]) -> None:
        """`_lines` when the link value is the row's own field `self.link` (no extra field)."""
        ordinal = self.sealer.maps[self.key].get
        ciphers, leaves = self.sealer.ciphers, self.sealer.leaves
        secret_of, kept_of, template, link = self.secret_of, self.kept_of, self.template, self.link
        tab_join, b64 = b"\t".join, binascii.b2a_base64
        nonce_at = self.nonce_base
        out = []
        out_add = out.append
        line_no = self.line
        sealed_rows = 0
        for line in lines:
            fields = line.split(b"\t")
            n = ordinal(fields[link])
            if n is None:
                out_add(line + b"\t\\N")
            else:
                cipher = ciphers[n]
                if cipher is None:  # one per subject, made when first needed (memory: ~100 bytes each)
                    cipher = ciphers[n] = AESGCM(bytes(leaves[32 * n : 32 * n + 32]))
                sealed = cipher.encrypt(
                    (nonce_at | line_no).to_bytes(12, "big"), tab_join(secret_of(fields)), None
                )[:-16]
                out_add(template % (*kept_of(fields), n, b64(sealed, newline=False)))
                sealed_rows += 1
            line_no += 1
        self.line = line_no
        self.sealed_rows += sealed_rows
        out_add(b"")
        self.raw.write(b"\n".join(out))

    def _lines(self, lines: list[bytes]) -> None:
        # The sealing of one row is written out here and in the loop above rather than called: a
        # call per row is a tenth of the sealing's cost (1.1 million rows at 200,000 students).
        ordinal = self.sealer.maps[self.key].get
        ciphers, leaves = self.sealer.ciphers, self.sealer.leaves
        secret_of, kept_of, template = self.secret_of, self.kept_of, self.template
        tab_join, b64 = b"\t".join, binascii.b2a_base64
        nonce_at = self.nonce_base
        plain, out = [], []
        plain_add, out_add = plain.append, out.append
        line_no = self.line
        sealed_rows = 0
        for line in lines:
            body, _, ref = line.rpartition(b"\t")
            plain_add(body)
            n = ordinal(ref)
            if n is None:
                out_add(body + b"\t\\N")
            else:
                fields = body.split(b"\t")
                cipher = ciphers[n]
                if cipher is None:  # one per subject, made when first needed (memory: ~100 bytes each)
                    cipher = ciphers[n] = AESGCM(bytes(leaves[32 * n : 32 * n + 32]))
                sealed = cipher.encrypt(
                    (nonce_at | line_no).to_bytes(12, "big"), tab_join(secret_of(fields)), None
                )[:-16]
                out_add(template % (*kept_of(fields), n, b64(sealed, newline=False)))
                sealed_rows += 1
            line_no += 1
        self.line = line_no
        self.sealed_rows += sealed_rows
        plain_add(b"")
        out_add(b"")
        self.plain.update(b"\n".join(plain))
        self.raw.write(b"\n".join(out))

    def finish(self) -> None:
        if self.carry:
            raise BackupError(f"COPY of {self.key} ended inside a line")


# --- restore side ------------------------------------------------------------------------------------
def read_subject_refs(manifest: dict[str, Any], data_key: bytes, get) -> list[bytes]:
    """The subjects' refs in ordinal order, from the `_subjects` stream (`get`: object key -> bytes)."""
    backup_id = manifest["backup_id"]
    stream = manifest["subject_keys"]["subjects_stream"]
    keys = stream["chunks"]
    try:
        data = b"".join(
            open_sealed(
                data_key, get(k), subjects_aad(backup_id, "", i, i == len(keys) - 1, manifest["version"])
            )
            for i, k in enumerate(keys)
        )
    except InvalidTag:
        raise BackupError(f"the subjects stream of backup {backup_id} fails authentication") from None
    if hashlib.sha256(data).hexdigest() != stream["sha256"]:
        raise BackupError(f"the subjects stream of backup {backup_id} does not match its manifest")
    return data.split(b"\n")[:-1] if data else []


#: a backup that does not record its table numbers (see `Unsealer.number_for`): how many sealed
#: rows decide a table's number, and how much of the table's first lines may be held to find them
PROBE_ROWS = 16
PROBE_HOLD_BYTES = 64 << 20


class Unsealer:
    """Opens the sealed rows of a version 5 backup while it is restored: each subject row's personal
    fields decrypted under its subject's key, or NULL / the column's marker when the key was shredded."""

    def __init__(self, manifest: dict[str, Any], key_set: KeySet, refs: list[bytes]):
        self.manifest, self.key_set, self.refs = manifest, key_set, refs
        self.leaves, self.present = expand(key_set.nodes, key_set.depth, key_set.subjects)
        recorded = (manifest.get("subject_keys") or {}).get("table_numbers")
        #: whether the nonces' table numbers are recorded (else `number_for` checks the guess)
        self.recorded = isinstance(recorded, dict)
        self.table_number = (
            {str(k): int(v) for k, v in recorded.items()}
            if self.recorded
            else {k: n for n, k in enumerate(manifest["table_order"])}
        )
        self.shredded_rows: dict[str, int] = {}
        self.ciphers: list[AESGCM | None] = [None] * key_set.subjects

    @classmethod
    def open(cls, manifest, *, data_key: bytes, store, client, location, get) -> Unsealer:
        backup_id = manifest["backup_id"]
        body = load_key_set_body(store, client, location, manifest["company_id"], backup_id)
        if body is None:
            raise BackupError(
                f"backup {backup_id} has per-subject keys but its key set is neither in the compliance store "
                f"nor in {location.describe()}/_escrow: no subject row can be read (the backup may have been "
                "crypto-shredded whole)"
            )
        key_set = KeySet.from_json(body, data_key)
        refs = read_subject_refs(manifest, data_key, get)
        if len(refs) != key_set.subjects:
            raise BackupError(
                f"backup {backup_id}: the key set covers {key_set.subjects} subjects, the subjects stream lists {len(refs)}"
            )
        return cls(manifest, key_set, refs)

    def _cipher(self, n: int) -> AESGCM:
        cipher = self.ciphers[n]
        if cipher is None:
            cipher = self.ciphers[n] = AESGCM(bytes(self.leaves[32 * n : 32 * n + 32]))
        return cipher

    def _open(self, n: int, number: int, line_no: int, blob: bytes, prefix: bytes, tagged: bool) -> bytes:
        """Row `line_no`'s sealed fields (COPY text), sealed under subject `n`'s key with table
        number `number` in the nonce. Raises InvalidTag, ValueError or binascii.Error."""
        if tagged:  # version 5: AES-GCM per row, its tag bound to backup, table, ref
            return self._cipher(n).decrypt(
                row_nonce(number, line_no), base64.b64decode(blob), prefix + self.refs[n]
            )
        return ctr_crypt(self._cipher(n), row_nonce(number, line_no), binascii.a2b_base64(blob))

    def _samples(self, lines: list[bytes], start: int, wanted: int) -> list[tuple[int, int, bytes]]:
        """Up to `wanted` sealed rows of `lines` (the table's lines from number `start`) whose
        subject's key is present: (subject number, line number, sealed field)."""
        found = []
        for line_no, line in enumerate(lines, start):
            if len(found) >= wanted:
                break
            seal = line.rpartition(b"\t")[2]
            if seal != NULL:
                ordinal, _, blob = seal.partition(b":")
                n = int(ordinal)
                if n < len(self.present) and self.present[n]:
                    found.append((n, line_no, blob))
        return found

    def number_for(
        self, name: str, samples: list[tuple[int, int, bytes]], width: int, prefix: bytes, tagged: bool
    ) -> int:
        """The table number the sealed rows of `name` were sealed under, for a backup whose manifest
        does not record it. Backups of versions 5 and 6 written before it was recorded numbered
        the tables in the order they were read, which is `table_order` unless that order was
        changed afterwards (it follows the foreign keys): the table's first sealed rows whose key
        is present (`samples`, see `wrap`) are opened under `table_order`'s number, and if they do
        not open, under every other; a single number under which all open is taken. Version 5
        rows carry a tag, so a wrong number cannot open them; version 6 rows must give the column
        count in valid UTF-8 (COPY's client encoding) for each of up to `PROBE_ROWS` rows."""
        guess = self.table_number[name]

        def opens(number: int) -> bool:
            for n, line_no, blob in samples:
                try:
                    secret = self._open(n, number, line_no, blob, prefix, tagged)
                    secret.decode("utf-8")
                except (InvalidTag, ValueError, binascii.Error):
                    return False
                if len(secret.split(b"\t")) != width:
                    return False
            return True

        if self.recorded or not samples or opens(guess):
            return guess
        fits = [n for n in range(len(self.manifest["table_order"])) if n != guess and opens(n)]
        return fits[0] if len(fits) == 1 else guess

    def wrap(
        self, name: str, spec: dict[str, Any], pieces: Iterator[bytes], problems: list[str]
    ) -> Iterator[bytes]:
        """The plain COPY text of a sealed table from its stored pieces. When the whole stored
        stream matches `sealed_sha256` and no subject of it was shredded, the output is exactly the
        source's rows (its hash is the manifest's `sha256`, checked by the restore as for any table);
        when some were, `spec["sha256"]` becomes the hash of what is restored (so the restore checks
        the database against that), and the count is reported. For a backup that does not record
        its table numbers, the first lines are held (up to `PROBE_HOLD_BYTES`) until `PROBE_ROWS`
        sealed rows with a present key are found, to check the table's number on them first."""
        sealed = spec["sealed"]
        names = [c["name"] for c in spec["columns"]]
        positions = [names.index(c) for c in sealed["columns"]]
        markers = {names.index(c): m.encode() for c, m in sealed.get("markers", {}).items()}
        number = self.table_number[name]
        prefix = subject_aad(self.manifest["backup_id"], name, b"")
        tagged = self.manifest["version"] < SUBJECT_CTR_VERSION
        stored, produced = hashlib.sha256(), hashlib.sha256()
        leaves, present, refs, ciphers = self.leaves, self.present, self.refs, self.ciphers
        line_no = 0
        shredded = bad = 0

        def hashed(source: Iterator[bytes]) -> Iterator[bytes]:
            for piece in source:
                stored.update(piece)
                yield piece

        def opened(lines: list[bytes]) -> bytes:
            nonlocal line_no, shredded, bad
            out = []
            for line in lines:
                body, _, seal = line.rpartition(b"\t")
                if seal != NULL:
                    fields = body.split(b"\t")
                    ordinal, _, blob = seal.partition(b":")
                    n = int(ordinal)
                    if n < len(present) and present[n]:
                        cipher = ciphers[n]
                        if cipher is None:
                            cipher = ciphers[n] = AESGCM(bytes(leaves[32 * n : 32 * n + 32]))
                        try:
                            if tagged:  # version 5: AES-GCM per row, its tag bound to backup, table, ref
                                secret = cipher.decrypt(
                                    row_nonce(number, line_no), base64.b64decode(blob), prefix + refs[n]
                                )
                            else:
                                secret = ctr_crypt(
                                    cipher, row_nonce(number, line_no), binascii.a2b_base64(blob)
                                )
                            values = secret.split(b"\t")
                            if len(values) != len(positions):
                                raise ValueError("wrong number of sealed fields")
                        except (InvalidTag, ValueError, binascii.Error):
                            bad += 1
                        else:
                            for p, value in zip(positions, values, strict=True):
                                fields[p] = value
                    else:
                        shredded += 1
                        for p, mark in markers.items():
                            fields[p] = mark
                    body = b"\t".join(fields)
                out.append(body)
                line_no += 1
            out.append(b"")
            text = b"\n".join(out)
            produced.update(text)
            return text

        batches = (lines for _index, lines in whole_lines(hashed(pieces)))
        if not self.recorded:
            held: list[list[bytes]] = []
            held_bytes = start = 0
            samples: list[tuple[int, int, bytes]] = []
            for lines in batches:  # left at the batch that decides; the rest is read below
                held.append(lines)
                held_bytes += sum(map(len, lines))
                samples += self._samples(lines, start, PROBE_ROWS - len(samples))
                start += len(lines)
                if len(samples) >= PROBE_ROWS or held_bytes >= PROBE_HOLD_BYTES:
                    break
            number = self.number_for(name, samples, len(positions), prefix, tagged)
            for lines in held:
                yield opened(lines)
            del held
        for lines in batches:
            yield opened(lines)
        if stored.hexdigest() != spec.get("sealed_sha256"):
            problems.append(f"{name}: the stored rows do not match the manifest's sealed_sha256")
        if bad:
            problems.append(
                f"{name}: the personal columns of {bad} row(s) fail authentication under their subject's key"
                if tagged
                else f"{name}: the personal columns of {bad} row(s) do not open under their subject's key"
            )
        if shredded:
            self.shredded_rows[name] = shredded
            spec["sha256"] = produced.hexdigest()


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def seal_spec_for(enabled: bool, plan_of, classification) -> SealSpec | str:
    """What the backup stage seals for one source: from its erasure plan (`plan_of()`) and the
    personal columns of its classification; or why nothing (turned off, no plan)."""
    from dereg.errors import GateError

    if not enabled:
        return "turned off in the company manifest (backup.subject_keys: false)"
    try:
        plan = plan_of()
    except GateError:
        return "no erasure plan for this source, so no row is known to belong to a subject"
    personal: dict[str, list[str]] = {}
    for c in classification.columns:
        if c.personal:
            personal.setdefault(c.table, []).append(c.column)
    return spec_from_plan(plan, personal)
