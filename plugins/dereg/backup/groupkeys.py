"""Subject group blocks (backup format version 7): one customer crypto-shredded inside a locked backup
at the cost of a plain backup, give or take.

Version 5 and 6 sealed each subject row under that subject's own key (subjectkeys.py): ciphertext
under independent keys does not compress, and sealing row by row costs a few microseconds of Python
per row. Version 7 groups the subjects instead: subject number `n` is in group `n // group_size`
(at most 4,096; fewer when the sealed tables are large per subject, so that a block stays
about 64 MiB). A sealed table's rows of a subject go, whole, to their group's *block*: one
object per group holding, table by table, the group's rows (each with its subject number and line
number), each table's section compressed with zstd and the whole block sealed with AES-256-GCM under
a random key of that group; the table's chunks hold only its rows of no subject. Each sealed table is
read once, as a plain backup reads it, and cut here as the rows arrive; its plain hash (`sha256`)
stays a plain backup's.

The group keys are wrapped under keys derived from the data key and kept apart from the ciphertext
(compliance store and unlocked escrow object), as the GGM key set is. A shred cannot change a
locked object, so it writes a new block of the group without the subject's values (generation + 1)
under a new key, and replaces the old key in every copy: the old block stays locked, and nothing can
decrypt it. Layout, what is learnt from the bucket and the trade-off: docs/backup-format.md,
"Subject group blocks".
"""

from __future__ import annotations

import array
import base64
import dataclasses
import hashlib
import heapq
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from dereg.backup.codec import CHUNK_BYTES, GROUP_KEYS_VERSION, NONCE_BYTES, whole_lines
from dereg.backup.subjectkeys import (
    NULL,
    SealSpec,
    _quote,
    finish_subjects,
    is_direct,
    link_expression,
    load_key_set_body,
    mapping_sql,
    own_link,
    read_refs,
    scanned,
    sealed_columns,
)
from dereg.errors import BackupError

try:  # format 7's row cut in C (plugins/dereg/backup/_cut.c), built by `pip install -e .` / `make venv`
    from _dereg_cut import cut as _cut
    from _dereg_cut import link_map as _link_map
except ImportError as exc:  # no fallback: the Python cut costs a sealed backup about a third more CPU
    raise ImportError(
        "dereg: the C module _dereg_cut (format 7's row cut, plugins/dereg/backup/_cut.c) is not built "
        "for this Python: run `pip install --no-deps -e .` in the repository (make venv does), or build "
        "the image again (Dockerfile); needs a C compiler and the Python headers"
    ) from exc

SCHEME = "group-blocks/zstd/aes-256-gcm"
KEY_SET_FORMAT = "dereg-group-keys"
BLOCK_FORMAT = "dereg-group-block"
BLOCKS_FOLDER = "groups"
#: subjects per group at most: a shred rewrites one group's block (about group_size / subjects of the
#: subjects' rows); a smaller group costs compression and an object per group (uploaded at the end of
#: the backup), a larger one a larger rewrite per shred. See docs/backup-format.md, "Group size".
GROUP_SIZE = 4096
#: sealed data a group's block should hold at most (bytes, before compression): a backup takes fewer
#: subjects per group than GROUP_SIZE when its sealed tables are large per subject (`estimate_group_size`),
#: so that a block (built whole in memory by the backup, a restore and a shred) stays this small
GROUP_BLOCK_TARGET = 64 * 1024 * 1024
#: a block's plaintext at most: AES-GCM (`cryptography`'s AESGCM) refuses 2**31 bytes or more; the
#: margin leaves room for the block's header line
BLOCK_LIMIT = 2**31 - 1 - (1 << 20)
#: zstd level of a block's sections, the chunks' level: level 3 cost more time (sections are
#: compressed on the reading thread) than the 1-2 % of size it saved
BLOCK_ZSTD_LEVEL = 1


# --- keys ----------------------------------------------------------------------------------------
def _wrap_key(data_key: bytes, backup_id: str, group: int, generation: int) -> bytes:
    """The key a group key is wrapped under: bound to backup, group and generation, so a wrapped key
    moved to another group or generation does not unwrap."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"dereg-backup group-key|{backup_id}|{group}|{generation}".encode(),
    ).derive(data_key)


def block_aad(backup_id: str, group: int, generation: int, version: int = GROUP_KEYS_VERSION) -> bytes:
    return f"dereg-backup-group/{version}|{backup_id}|{group}|{generation}".encode()


def block_key(location, backup_id: str, group: int, generation: int, tag: str = "") -> str:
    """A block's object key; a rewrite's (`tag`: random hex) never names another run's block, so two
    shreds of one group at the same time cannot write over each other's block."""
    name = f"{generation:06d}-{tag}.block" if tag else f"{generation:06d}.block"
    return location.key(backup_id, BLOCKS_FOLDER, f"{group:06d}", name)


@dataclasses.dataclass
class Group:
    """One group's current block and key (plain key in memory only)."""

    group: int
    generation: int
    block: str
    key: bytes
    shredded: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class GroupKeySet:
    backup_id: str
    group_size: int
    subjects: int
    groups: list[Group]

    @property
    def shredded(self) -> int:
        return sum(len(g.shredded) for g in self.groups)

    def to_json(self, data_key: bytes) -> dict[str, Any]:
        return {
            "format": KEY_SET_FORMAT,
            "version": 1,
            "backup_id": self.backup_id,
            "scheme": SCHEME,
            "group_size": self.group_size,
            "subjects": self.subjects,
            "shredded": self.shredded,
            "wrap": "AES-KW (RFC 3394) under HKDF-SHA256(data key, info "
            "'dereg-backup group-key|<backup_id>|<group>|<generation>')",
            "groups": [
                {
                    "group": g.group,
                    "generation": g.generation,
                    "block": g.block,
                    "key": base64.b64encode(
                        aes_key_wrap(_wrap_key(data_key, self.backup_id, g.group, g.generation), g.key)
                    ).decode("ascii"),
                    "shredded": list(g.shredded),
                }
                for g in self.groups
            ],
        }

    @classmethod
    def from_json(cls, body: dict[str, Any], data_key: bytes) -> GroupKeySet:
        if body.get("format") != KEY_SET_FORMAT or body.get("version") != 1:
            raise BackupError(
                f"the subject group keys of backup {body.get('backup_id')} are not a version 1 group key set"
            )
        backup_id = body["backup_id"]
        groups = []
        try:
            for g in body["groups"]:
                number, generation = int(g["group"]), int(g["generation"])
                key = aes_key_unwrap(
                    _wrap_key(data_key, backup_id, number, generation), base64.b64decode(g["key"])
                )
                groups.append(
                    Group(number, generation, str(g["block"]), key, [int(n) for n in g["shredded"]])
                )
        except (InvalidUnwrap, ValueError, TypeError, KeyError):
            raise BackupError(
                f"the subject group keys of backup {backup_id} do not unwrap under its data key: they were "
                "altered or belong to another backup"
            ) from None
        if [g.group for g in groups] != list(range(len(groups))):
            raise BackupError(f"the subject group keys of backup {backup_id} do not list every group once")
        return cls(backup_id, int(body["group_size"]), int(body["subjects"]), groups)


def estimate_group_size(cur, qualified: list[str], subjects: int) -> int:
    """Subjects per group for this backup: as many as keep a group's share of the sealed tables
    (`qualified`: their SQL names) under GROUP_BLOCK_TARGET, at most GROUP_SIZE, at least 1. The
    tables' size on disk (`pg_table_size`: heap and TOAST) stands for their rows; pg_stats' avg_width
    would not do, as it counts a value moved to TOAST as its 18-byte pointer. Read in the backup's
    snapshot before the rows are cut; a few catalog calls, whatever the tables' size."""
    if subjects <= 0 or not qualified:
        return GROUP_SIZE
    total = 0
    for name in qualified:
        cur.execute("SELECT pg_table_size(%s::regclass)", (name,))
        total += int(cur.fetchone()[0] or 0)
    if total <= 0:
        return GROUP_SIZE
    return max(1, min(GROUP_SIZE, GROUP_BLOCK_TARGET * subjects // total))


def _block_too_large(
    backup_id: str, group: int, size: int, table: str, group_size: int | None = None
) -> BackupError:
    why = (
        "its subjects' rows are that large"
        if group_size is None
        else "this one subject's rows are that large"
        if group_size == 1
        else f"the group size ({group_size} subjects, estimated from the sealed tables' size) did not keep "
        "it small: these subjects' rows are much larger than the average"
    )
    return BackupError(
        f"backup {backup_id}: subject group {group} holds {size / 2**30:.2f} GiB of sealed rows with table "
        f"{table}, more than one AES-256-GCM block can hold (2 GiB); {why}. Keep values this large (files, "
        f"scans) out of {table}'s personal columns (e.g. in an object store the row refers to) or out of "
        "the columns the erasure plan seals, then back up again. This backup was not marked complete."
    )


# --- blocks --------------------------------------------------------------------------------------
def seal_block(
    key: bytes,
    backup_id: str,
    group: int,
    generation: int,
    sections: list[tuple[str, int, bytes]],
    shredded: list[int],
) -> bytes:
    """A block object: nonce || AES-256-GCM(header line + the sections' zstd frames). `sections`:
    (table, entries, compressed frame) in table order."""
    header = {
        "format": BLOCK_FORMAT,
        "backup_id": backup_id,
        "group": group,
        "generation": generation,
        "shredded": sorted(shredded),
        "tables": [
            {"name": name, "entries": entries, "bytes": len(frame)} for name, entries, frame in sections
        ],
    }
    size = sum(len(f) for _, _, f in sections)
    if size > BLOCK_LIMIT:  # AESGCM would refuse it with a bare OverflowError
        largest = max(sections, key=lambda s: len(s[2]))[0]
        raise _block_too_large(backup_id, group, size, largest)
    plaintext = (
        json.dumps(header, separators=(",", ":")).encode() + b"\n" + b"".join(f for _, _, f in sections)
    )
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, block_aad(backup_id, group, generation))


def open_block(key: bytes, blob: bytes, backup_id: str, group: int, generation: int) -> tuple[dict, dict]:
    """(header, {table: (entries, compressed frame)}) of a block; BackupError when it does not open."""
    try:
        plaintext = AESGCM(key).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], block_aad(backup_id, group, generation)
        )
    except InvalidTag:
        raise BackupError(
            f"backup {backup_id}: the block of subject group {group} (generation {generation}) fails "
            "authentication under its group key"
        ) from None
    head, _, rest = plaintext.partition(b"\n")
    header = json.loads(head)
    if (header.get("format"), header.get("backup_id"), header.get("group"), header.get("generation")) != (
        BLOCK_FORMAT,
        backup_id,
        group,
        generation,
    ):
        raise BackupError(f"backup {backup_id}: the block of subject group {group} describes another block")
    frames, at = {}, 0
    for table in header["tables"]:
        frames[table["name"]] = (int(table["entries"]), rest[at : at + int(table["bytes"])])
        at += int(table["bytes"])
    if at != len(rest):
        raise BackupError(
            f"backup {backup_id}: the block of subject group {group} has bytes its header does not list"
        )
    return header, frames


def _decompress(frame: bytes) -> bytes:
    """A section's text: its frames (one or several zstd frames one after the other) decompressed."""
    if not frame:
        return b""
    return zstandard.ZstdDecompressor().stream_reader(frame, read_across_frames=True).read()


def _entries(frame: bytes, shredded: frozenset[int] = frozenset()) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, subject number, the row's COPY text, whether its subject was shredded) of one
    table's section, in line order."""
    reader = io.BufferedReader(
        zstandard.ZstdDecompressor().stream_reader(frame, read_across_frames=True), buffer_size=1 << 16
    )
    for raw in reader:
        n, line, row = raw[:-1].split(b"\t", 2)
        subject = int(n)
        yield int(line), subject, row, subject in shredded


class _FileRange:
    """A read-only view of `length` bytes at `offset` of an open file (os.pread: shared safely by
    threads that each read their own range)."""

    def __init__(self, fd: int, offset: int, length: int):
        self.fd, self.at, self.end = fd, offset, offset + length

    def read(self, size: int = -1) -> bytes:
        size = self.end - self.at if size is None or size < 0 else min(size, self.end - self.at)
        data = os.pread(self.fd, size, self.at) if size > 0 else b""
        self.at += len(data)
        return data


def _range_entries(
    fd: int, start: int, size: int, shredded: frozenset[int], buffer: int
) -> Iterator[tuple[int, int, bytes, bool]]:
    """`_entries` of decompressed section text kept at `start` of an open file, read `buffer` bytes at
    a time."""
    source, rest = _FileRange(fd, start, size), b""
    while piece := source.read(buffer):
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        for raw in lines:
            n, line, row = raw.split(b"\t", 2)
            subject = int(n)
            yield int(line), subject, row, subject in shredded
    if rest:
        raise BackupError("a subject group block's section does not end with a whole row")


def drop_subject(frame: bytes, ordinal: int, marks: dict[int, bytes]) -> tuple[bytes, int]:
    """A section with `ordinal`'s rows' sealed fields replaced (`marks`: field position -> `\\N` or
    the column's marker); returns (new frame, rows changed)."""
    mark = b"%d" % ordinal
    out, changed = [], 0
    for line in _decompress(frame).split(b"\n")[:-1]:
        parts = line.split(b"\t", 2)
        if parts[0] == mark:
            changed += 1
            fields = parts[2].split(b"\t")
            for p, value in marks.items():
                fields[p] = value
            line = b"\t".join([*parts[:2], b"\t".join(fields)])
        out.append(line + b"\n")
    return zstandard.ZstdCompressor(level=BLOCK_ZSTD_LEVEL).compress(b"".join(out)), changed


def shredded_marks(spec: dict[str, Any]) -> dict[int, bytes]:
    """Field position -> what a shredded subject's row holds there: `\\N`, or the marker of a NOT NULL
    column (the manifest's `sealed.markers`)."""
    names = [c["name"] for c in spec["columns"]]
    markers = spec["sealed"].get("markers", {})
    return {names.index(c): markers.get(c, "\\N").encode() for c in spec["sealed"]["columns"]}


# --- backup side -----------------------------------------------------------------------------------
def rows_sql(spec: SealSpec, hops, qualified: str, columns: list[dict[str, Any]], relkind: str = "r") -> str:
    """COPY of every row of the table as a plain backup reads it (the same scan of the same rows,
    `subjectkeys.scanned`: an inheritance parent's own rows only, so the same order),
    each with one more field in front: its link value as text (`subjectkeys.link_expression`: the
    subject ref itself when the row links straight to the subject's key), which the sealer maps to a
    subject number. No join, no sort, no window: the server's work is a plain backup's."""
    cols = ", ".join(f"dereg_t.{_quote(c['name'])}" for c in columns)
    return (
        f"COPY (SELECT {link_expression(spec, 'dereg_t', hops)}, {cols} FROM {scanned(qualified, relkind)} "
        "dereg_t) TO STDOUT"
    )


def link_map(pairs: bytes, ordinal: dict[bytes, int], keys: list[bytes] | None = None) -> dict[bytes, int]:
    """{link value: subject number} of `mapping_sql`'s COPY text (`value\tref` lines, lowest subject
    last, so it wins), without the NULL link and refs that are no subject: `link_map_reference` in C
    (`_dereg_cut.link_map`), with `keys` (`ordinal[keys[m]] == m` for every m) to guess each ref from
    the one before (they come in subject order)."""
    return _link_map(pairs, ordinal, keys)


def link_map_reference(pairs: bytes, ordinal: dict[bytes, int]) -> dict[bytes, int]:
    """`link_map` in Python, its specification (tests/unit/test_group_cut.py compares them). A raw
    tab or newline only ever separates COPY fields and lines, so the text splits into alternating
    values and refs at once."""
    fields = pairs.replace(b"\n", b"\t").split(b"\t")
    fields.pop()  # after the last line's end
    found = dict(zip(fields[0::2], map(ordinal.get, fields[1::2]), strict=True))
    found.pop(NULL, None)
    if None in found.values():
        found = {value: n for value, n in found.items() if n is not None}
    return found


def cut_reference(
    block,
    link: int | None,
    ordinal: dict[bytes, int],
    group_size: int,
    first_line: int,
    groups,
    counts,
    keys: list[bytes] | None = None,
) -> tuple[int, int, int, bytes, bytes | None]:
    """The row cut in Python: what `_dereg_cut.cut` (C, which `_GroupRouter` uses) does, kept as its
    specification (tests/unit/test_group_cut.py compares the two on random blocks).

    `block`'s whole lines (up to its last newline: `end` bytes) are COPY rows, the first one line
    `first_line` of the table. A row's link is its field `link`, or (None) an extra field in front,
    taken off. A row whose link is in `ordinal` (subject number `n`) is appended to the bytearray
    `groups[n // group_size]` as `n\tline\trow\n` and counted in `counts` (an array('q'), one item
    per group); the others go, as they are, to `stored`. `plain` is the plain COPY text of those
    lines (None when `link` is a field: the block's whole lines are that text). Returns
    (end, rows, stored rows, stored, plain). `keys` (`ordinal[keys[m]] == m` for every m) only lets
    the C cut guess the next row's subject: it changes no answer, so here it is not used."""
    end = bytes(block).rfind(b"\n") + 1
    lines = bytes(block[:end]).split(b"\n")
    lines.pop()
    stored: list[bytes] = []
    plains: list[bytes] | None = [] if link is None else None
    line_no = first_line
    for line in lines:
        if link is None:
            ref, _, row = line.partition(b"\t")
            plains.append(row)
        else:
            ref, row = line.split(b"\t", link + 1)[link], line
        n = ordinal.get(ref)
        if n is None:
            stored.append(row)
        else:
            groups[n // group_size] += b"%d\t%d\t%b\n" % (n, line_no, row)
            counts[n // group_size] += 1
        line_no += 1
    joined = b"".join(line + b"\n" for line in stored)
    plain = None if plains is None else b"".join(row + b"\n" for row in plains)
    return end, len(lines), len(stored), joined, plain


class _GroupRouter(io.RawIOBase):
    """`rows_sql`'s COPY in (scan order), cut: each subject's row, as `n, line number, row`, into its
    group's buffer (compressed as one zstd frame and spooled once it holds `FLUSH` rows, and at the
    end), each row of no subject to the stored stream `raw`, and every row's plain COPY text hashed,
    as a plain backup hashes the table. The row's link is its field `link`, or (None) an extra field
    in front, taken off. The cut is C (`_dereg_cut.cut`, specified by `cut_reference`): a block of
    lines at a time, at most one dict lookup per row and no other Python object per row. Memory: at
    most `FLUSH` rows per group, and about `HELD_BYTES` in all."""

    FLUSH = 2048
    #: bytes held in all groups' buffers at most (about): past it every group is flushed, so that
    #: memory does not grow with the number of groups (rows arrive in scan order, every group's
    #: buffer fills at the same pace) nor with the rows' width
    HELD_BYTES = 32 * 1024 * 1024

    def __init__(
        self,
        sealer: GroupSealer,
        table: str,
        raw,
        ordinal: dict[bytes, int],
        *,
        groups: int,
        group_size: int,
        link: int | None = None,
        keys: list[bytes] | None = None,
    ):
        super().__init__()
        self.sealer, self.table, self.raw, self.ordinal, self.link = sealer, table, raw, ordinal, link
        #: `ordinal`'s keys in subject order when it is exactly {keys[m]: m}: the cut's guesses
        self.keys = keys
        self.carry = b""
        self.group_size = group_size
        #: per group: its rows so far (`n\tline\trow\n` each), and how many
        self.buffers = [bytearray() for _ in range(groups)]
        self.entries = array.array("q", bytes(8 * groups))
        self.plain = hashlib.sha256()
        self.rows = self.subject_rows = 0
        self.held = 0
        self.compressor = zstandard.ZstdCompressor(level=BLOCK_ZSTD_LEVEL)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        block = self.carry + data if self.carry else data  # data: bytes or a BufferedWriter's view
        end, rows, stored_rows, stored, plain = _cut(
            block, self.link, self.ordinal, self.group_size, self.rows, self.buffers, self.entries, self.keys
        )
        if end < len(block):
            self.carry = bytes(block[end:])
        else:
            self.carry = b""
        if not end:
            return len(data)
        self.plain.update(memoryview(block)[:end] if plain is None else plain)
        self.held += end
        if stored:
            self.raw.write(stored)
            self.held -= len(stored)
        self.subject_rows += rows - stored_rows
        self.rows += rows
        entries = self.entries
        if self.held > self.HELD_BYTES:
            for group in range(len(entries)):
                self._flush(group)
            self.held = 0
        else:
            flush = self.FLUSH
            for group, got in enumerate(entries):
                if got >= flush:
                    self._flush(group)
        return len(data)

    def _flush(self, group: int) -> None:
        entries = self.entries[group]
        if not entries:
            return
        text = self.buffers[group]
        self.buffers[group], self.entries[group] = bytearray(), 0
        self.sealer.spool_frame(group, self.table, entries, self.compressor.compress(text), more=True)

    def finish(self) -> None:
        if self.carry:
            raise BackupError(f"the COPY of {self.table} ended inside a line")
        for group in range(len(self.buffers)):
            self._flush(group)


class GroupSealer:
    """Splits a backup's subject rows (PostgreSQL COPY path) into stored rows and group blocks; made
    by `sealer_for`, prepared by `pgcopy.dump_tables` inside the backup's snapshot."""

    version = GROUP_KEYS_VERSION
    #: what a sealed table costs against a plain one (its rows are cut here, in this process): pgcopy
    #: starts the sealed tables first by their size times this, so that the blocks go early
    read_weight = 2

    def __init__(self, spec: SealSpec, backup_id: str, group_size: int | None = None):
        self.spec, self.backup_id, self.group_size = spec, backup_id, group_size or GROUP_SIZE
        self.refs: list[bytes] = []
        self.sealed: dict[str, dict[str, Any]] = {}
        self.table_order: list[str] = []
        #: (group, table) -> [(entries, offset, length) in the spool, ...]: its zstd frames in order
        self.frames: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
        self.spool = tempfile.TemporaryFile(prefix="dereg-groups-")
        #: group -> bytes of its sections spooled so far (checked against BLOCK_LIMIT after each table)
        self.group_bytes: dict[int, int] = {}
        self.lock = threading.Lock()
        self.key_set: GroupKeySet | None = None
        #: the backup session (set by whoever makes the sealer): the blocks are uploaded as soon as
        #: every sealed table is read, while the other tables still are
        self.session = None
        self.done: set[str] = set()
        self.total_rows: dict[str, int] = {}
        #: per sealed table: its link value (as text) -> subject number
        self.maps: dict[str, dict[bytes, int]] = {}
        #: {ref: subject number} (the map of a table that links to the subject directly)
        self.ordinal: dict[bytes, int] = {}
        self.blocks: list[list[str]] | None = None
        self.writer: threading.Thread | None = None
        self.writer_error: BaseException | None = None
        #: set by `abort` (the backup failed): the writer stops at its next group, none is started
        self.aborted = threading.Event()

    def prepare(
        self,
        cur,
        table_keys: list[str],
        columns_of: dict[str, list[dict[str, Any]]],
        qualified: dict[str, str] | None = None,
    ) -> None:
        """Read the subjects' refs and link maps in the snapshot, decide per table which columns are
        sealed, and (with `qualified`: table key -> SQL name) how many subjects a group takes."""
        spec = self.spec
        self.refs = read_refs(cur, spec)
        ordinal = self.ordinal = dict(zip(self.refs, range(len(self.refs)), strict=True))  # built in C
        self.table_order = list(table_keys)
        for name, table in spec.tables.items():
            if name not in columns_of:
                continue
            entry = sealed_columns(spec, name, table, columns_of[name])
            if entry is None:
                continue
            self.sealed[name] = entry
            if is_direct(spec, table.hops):
                self.maps[name] = ordinal
            else:  # link value -> subject number, read in the snapshot (a hash lookup per row)
                out = io.BytesIO()
                cur.copy_expert(mapping_sql(spec, table.hops), out)
                keys = self.refs if len(ordinal) == len(self.refs) else None
                self.maps[name] = link_map(out.getvalue(), ordinal, keys)
        if qualified is not None:
            names = [qualified[name] for name in self.sealed if name in qualified]
            self.group_size = min(self.group_size, estimate_group_size(cur, names, len(self.refs)))

    def seals(self, key: str) -> bool:
        return key in self.sealed

    def spool_frame(self, group: int, table: str, entries: int, frame: bytes, *, more: bool = False) -> None:
        """Keep one zstd frame of a group's section of `table` in the spool file (`more`: the section
        may already have frames, appended in line order)."""
        with self.lock:
            if (group, table) in self.frames and not more:
                raise BackupError(f"the sealed values of {table} list subject group {group} twice")
            offset = self.spool.seek(0, io.SEEK_END)
            self.spool.write(frame)
            self.group_bytes[group] = self.group_bytes.get(group, 0) + len(frame)
            self.frames.setdefault((group, table), []).append((entries, offset, len(frame)))

    def _largest_table(self, group: int) -> str:
        """The table with the most spooled bytes in `group` (call with the lock held)."""
        sizes = {
            table: sum(length for _, _, length in frames)
            for (g, table), frames in self.frames.items()
            if g == group
        }
        return max(sorted(sizes), key=sizes.__getitem__)

    def copy_out(
        self, cur, key: str, qualified: str, columns: list[dict[str, Any]], raw, relkind: str = "r", psql=None
    ) -> tuple[int, str]:
        """One COPY of the table (`rows_sql`, in the backup's snapshot), cut here: the subjects' rows
        to their groups' sections (spooled), the others to `raw` (the chunk stream), every row
        hashed as plain text. Returns (rows in group blocks, plain SHA-256)."""
        from dereg.backup.pgcopy import READ_BLOCK, _copy_sql

        hops = self.spec.tables[key].hops
        link = own_link(self.spec, hops, columns)
        # the row's own link column: the plain backup's own statement; else the link in front
        sql = (
            _copy_sql(qualified, relkind, columns)
            if link is not None
            else rows_sql(self.spec, hops, qualified, columns, relkind)
        )
        groups = -(-len(self.refs) // self.group_size)
        ordinal = self.maps[key]
        # the refs in subject order let the cut guess a row's subject from the row before's (rows
        # often come in subject order), when the map is the refs' own and they are all distinct
        keys = self.refs if len(ordinal) == len(self.refs) and ordinal is self.ordinal else None
        router = _GroupRouter(
            self, key, raw, ordinal, groups=groups, group_size=self.group_size, link=link, keys=keys
        )
        if psql is not None:
            psql.copy_out(key, sql, router)
        else:
            buffered = io.BufferedWriter(router, buffer_size=READ_BLOCK)
            cur.copy_expert(sql, buffered)
            buffered.flush()
        router.finish()
        with self.lock:
            group, size = max(self.group_bytes.items(), key=lambda item: item[1], default=(0, 0))
            if size > BLOCK_LIMIT:  # fail now, not when the block is sealed
                # named: the table holding most of the group's bytes, not the one whose read
                # happened to end last (tables are read in parallel: it may hold little of it)
                largest = self._largest_table(group)
                raise _block_too_large(self.backup_id, group, size, largest, self.group_size)
        self.sealed[key]["rows"] = router.subject_rows
        self.total_rows[key] = router.rows
        writer = None
        with self.lock:
            self.done.add(key)
            if (
                self.session is not None
                and self.writer is None
                and not self.aborted.is_set()
                and self.done >= set(self.sealed)
            ):
                # sealed and queued in the background: this connection goes on with other tables
                writer = self.writer = threading.Thread(
                    target=self._write_blocks_noting_error, args=(self.session,), name="dereg-groups"
                )
        if writer is not None:
            writer.start()
        return router.subject_rows, router.plain.hexdigest()

    def abort(self) -> None:
        """The backup failed: stop writing blocks and wait for the writer thread to end (call it
        after the session's uploader is closed, so that a writer waiting for room in its queue is
        woken), so that no thread of a failed backup outlives it."""
        with self.lock:
            self.aborted.set()
            writer = self.writer
        if writer is not None:
            writer.join()
        self.spool.close()

    def _write_blocks_noting_error(self, session) -> None:
        try:
            self.write_blocks(session)
        except BaseException as exc:  # noqa: BLE001 - raised by `finish`
            self.writer_error = exc

    def table_entry(self, key: str, stream) -> dict[str, Any]:
        """The manifest's `rows` (all of them; the stored stream holds those of no subject),
        `sealed_sha256` (of the stored stream) and `sealed`."""
        return {
            "rows": self.total_rows[key],
            "sealed_sha256": stream.digest.hexdigest(),
            "sealed": dict(self.sealed[key]),
        }

    def write_blocks(self, session) -> None:
        """Seal every group's block (generation 0, a fresh key each) and queue its upload (locked
        like the chunks); the keys are kept for `finish`."""
        groups = -(-len(self.refs) // self.group_size)
        tables = [t for t in self.table_order if t in self.sealed]
        key_set = GroupKeySet(self.backup_id, self.group_size, len(self.refs), [])
        blocks = []
        try:
            for g in range(groups):
                if self.aborted.is_set():
                    raise BackupError(
                        f"backup {self.backup_id} failed: its subject group blocks were not all written"
                    )
                sections = []
                for table in tables:
                    entries, frames = 0, []
                    for count, offset, length in self.frames.get((g, table), []):
                        self.spool.seek(offset)
                        frames.append(self.spool.read(length))
                        entries += count
                    sections.append((table, entries, b"".join(frames)))
                key = os.urandom(32)
                where = block_key(session.location, self.backup_id, g, 0)
                blob = seal_block(key, self.backup_id, g, 0, sections, [])
                session.uploader.put_later(where, blob)
                key_set.groups.append(Group(g, 0, where, key))
                blocks.append([where, hashlib.sha256(blob).hexdigest()])
        finally:
            self.spool.close()
        self.key_set, self.blocks = key_set, blocks

    def finish(self, session) -> dict[str, Any]:
        """The group blocks (unless `copy_out` wrote them already), the `_subjects` stream, and the
        group keys (store and escrow, never locked); returns the manifest's `subject_keys`."""
        if self.writer is not None:
            self.writer.join()
            if self.writer_error is not None:
                raise self.writer_error
        if self.blocks is None:
            self.write_blocks(session)
        groups = len(self.blocks)
        stream = finish_subjects(session, self.backup_id, self.refs, self.key_set, self.version)
        return {
            "enabled": True,
            "scheme": SCHEME,
            "subject_table": self.spec.subject_table,
            "subject_key": self.spec.subject_key,
            "subjects": len(self.refs),
            "group_size": self.group_size,
            "groups": groups,
            "blocks": self.blocks,
            "shredded_value": "NULL; a NOT NULL column gets `markers` (text: '#shredded' cut to the column's length)",
            "subjects_stream": {
                "rows": stream.newlines,
                "sha256": stream.digest.hexdigest(),
                "bytes": stream.size,
                "chunks": stream.chunks,
            },
            **({"unsealed": dict(self.spec.unsealed)} if self.spec.unsealed else {}),
        }


def sealer_for(
    subjects, backup_id: str, *, copy_text: bool, engine, scheme: str = "groups"
) -> tuple[Any, dict[str, Any]]:
    """A sealer for `subjects` (a SealSpec): a `groupkeys.GroupSealer` (format version 7), or with
    `scheme="ggm"` a GGM `Sealer` (version 6); or None and the manifest's `subject_keys` entry saying
    why this backup has no per-subject keys."""
    from dereg.backup import subjectkeys
    from dereg.dialects import sqlalchemy_name

    if isinstance(subjects, SealSpec) and copy_text and subjects.tables:
        if scheme == "ggm":
            return subjectkeys.Sealer(subjects, backup_id), {}
        if scheme != "groups":
            raise BackupError(
                f"unknown per-subject key scheme {scheme!r}: 'groups' (version 7) or 'ggm' (version 6)"
            )
        return GroupSealer(subjects, backup_id), {}
    if isinstance(subjects, SealSpec) and not copy_text:
        why = (
            f"per-subject keys are built on the PostgreSQL COPY path only; this {sqlalchemy_name(engine)} "
            "backup has none (a subject's rows can only go with the whole backup)"
        )
    elif isinstance(subjects, SealSpec):
        why = "the erasure plan links no personal column to the subjects"
    else:
        why = subjects or "no erasure plan was given, so no row is known to belong to a subject"
    return None, {"enabled": False, "reason": why}


# --- restore side ------------------------------------------------------------------------------------
class GroupUnsealer:
    """Puts the subjects' rows of a version 7 backup, from its group blocks, back among the stored rows
    of no subject while it is restored. Memory stays flat in the number of subjects: each block is
    opened alone and its compressed sections are kept in an unnamed temporary file; a table's sections
    are decompressed there too, and merged through a small read buffer per group."""

    #: bytes read at a time from one group's decompressed rows while they are merged
    READ_BUFFER = 1 << 14

    def __init__(
        self,
        manifest: dict[str, Any],
        key_set: GroupKeySet,
        frames: Iterator[dict[str, tuple[int, bytes]]] = (),
    ):
        self.manifest, self.key_set = manifest, key_set
        self.shredded = [frozenset(g.shredded) for g in key_set.groups]
        self.shredded_rows: dict[str, int] = {}
        self.spool = tempfile.TemporaryFile(prefix="dereg-group-blocks-")
        #: per group, in order: table -> (entries, offset, length) of its compressed section in the spool
        self.sections: list[dict[str, tuple[int, int, int]]] = []
        for found in frames:
            self.keep(found)

    def keep(self, found: dict[str, tuple[int, bytes]]) -> None:
        """Spool the next group's sections ({table: (entries, compressed frame)} of its block)."""
        at = self.spool.seek(0, io.SEEK_END)
        kept: dict[str, tuple[int, int, int]] = {}
        for name, (entries, frame) in found.items():
            self.spool.write(frame)
            kept[name] = (entries, at, len(frame))
            at += len(frame)
        self.spool.flush()
        self.sections.append(kept)

    @classmethod
    def open(cls, manifest, *, data_key: bytes, store, client, location, get) -> GroupUnsealer:
        backup_id = manifest["backup_id"]
        entry = manifest["subject_keys"]
        body = load_key_set_body(store, client, location, manifest["company_id"], backup_id)
        if body is None:
            raise BackupError(
                f"backup {backup_id} has subject group keys but they are neither in the compliance store nor in "
                f"{location.describe()}/_escrow: no subject row can be read (the backup may have been "
                "crypto-shredded whole)"
            )
        key_set = GroupKeySet.from_json(body, data_key)
        if (key_set.subjects, len(key_set.groups), key_set.group_size) != (
            entry["subjects"],
            entry["groups"],
            entry["group_size"],
        ):
            raise BackupError(
                f"backup {backup_id}: its group keys do not describe the manifest's subject groups"
            )
        opened, counts = cls(manifest, key_set), {}
        for group in key_set.groups:
            if group.generation == 0 and group.block != entry["blocks"][group.group][0]:
                raise BackupError(
                    f"backup {backup_id}: the group keys name another block for group {group.group}"
                )
            header, found = open_block(group.key, get(group.block), backup_id, group.group, group.generation)
            if sorted(header["shredded"]) != sorted(group.shredded):
                raise BackupError(
                    f"backup {backup_id}: block of group {group.group} and its key set disagree"
                )
            opened.keep(found)
            for name, (entries, _) in found.items():
                counts[name] = counts.get(name, 0) + entries
        for name, spec in manifest["tables"].items():
            if spec.get("sealed") and counts.get(name, 0) != spec["sealed"].get("rows"):
                raise BackupError(
                    f"backup {backup_id}: the group blocks hold {counts.get(name, 0)} sealed rows of {name}, "
                    f"the manifest {spec['sealed'].get('rows')}"
                )
        return opened

    def wrap(
        self, name: str, spec: dict[str, Any], pieces: Iterator[bytes], problems: list[str]
    ) -> Iterator[bytes]:
        """The table's plain COPY text: the stored rows (those of no subject; they must hash to
        `sealed_sha256`) and the blocks' rows merged by line number. When no row of a shredded subject
        is among them the output is the source's rows (`sha256`, checked by the restore as for any
        table); else `spec["sha256"]` becomes the hash of what is restored and the rows are counted."""
        with tempfile.TemporaryFile(prefix="dereg-group-rows-") as rows:
            yield from self._merged(name, spec, pieces, problems, rows)

    def _merged(self, name: str, spec: dict[str, Any], pieces: Iterator[bytes], problems: list[str], rows):
        ranges = []
        for g, kept in enumerate(self.sections):
            if name not in kept or not kept[name][0]:
                continue
            _, offset, length = kept[name]
            start = rows.seek(0, io.SEEK_END)
            reader = zstandard.ZstdDecompressor().stream_reader(
                _FileRange(self.spool.fileno(), offset, length), read_across_frames=True
            )
            shutil.copyfileobj(reader, rows, 1 << 16)
            ranges.append((g, start, rows.tell() - start))
        rows.flush()
        merged = heapq.merge(
            *(
                _range_entries(rows.fileno(), start, size, self.shredded[g], self.READ_BUFFER)
                for g, start, size in ranges
            )
        )
        stored, produced = hashlib.sha256(), hashlib.sha256()
        nxt = next(merged, None)
        line_no = shredded = 0
        disorder = False

        def hashed(source: Iterator[bytes]) -> Iterator[bytes]:
            for piece in source:
                stored.update(piece)
                yield piece

        out: list[bytes] = []
        held = 0

        def flush() -> bytes:
            nonlocal out, held
            out.append(b"")
            text = b"\n".join(out)
            produced.update(text)
            out, held = [], 0
            return text

        def theirs() -> Iterator[bytes]:
            # the blocks' rows due before the next stored line, passed on a chunk at a time (a table
            # whose rows all belong to subjects has no stored line to wait for)
            nonlocal nxt, line_no, shredded, disorder, held
            while nxt is not None and nxt[0] <= line_no:
                if nxt[0] < line_no:
                    disorder = True
                out.append(nxt[2])
                held += len(nxt[2]) + 1
                shredded += nxt[3]
                line_no += 1
                nxt = next(merged, None)
                if held >= CHUNK_BYTES:
                    yield flush()

        for _index, lines in whole_lines(hashed(pieces)):
            for line in lines:
                yield from theirs()
                out.append(line)
                line_no += 1
            yield from theirs()
            if out:
                yield flush()
        yield from theirs()
        if out:
            yield flush()
        if stored.hexdigest() != spec.get("sealed_sha256"):
            problems.append(f"{name}: the stored rows do not match the manifest's sealed_sha256")
        if disorder or nxt is not None:
            problems.append(f"{name}: the group blocks' line numbers do not fit the stored rows")
        elif line_no != spec.get("rows"):  # the COPY's row count, checked as for a plain table
            problems.append(
                f"{name}: {line_no} rows merged from the stored rows and the group blocks, the manifest "
                f"says {spec.get('rows')}"
            )
        if shredded:
            self.shredded_rows[name] = shredded
            spec["sha256"] = produced.hexdigest()


# --- shredding one subject ---------------------------------------------------------------------------
def rewrite_group(
    key_set: GroupKeySet, ordinal: int, *, get, put, location, marks: dict[str, dict[int, bytes]]
) -> tuple[Group, Group | None]:
    """Write the next generation of `ordinal`'s group block with its rows' sealed fields replaced by
    `marks` (table -> `shredded_marks`), under a new key, and read it back; returns (the group as it is now in `key_set`, the replaced one or None when
    the subject was already shredded). The caller saves the key set: until then the old key stays."""
    g = ordinal // key_set.group_size
    if not 0 <= g < len(key_set.groups) or ordinal >= key_set.subjects:
        raise BackupError(f"backup {key_set.backup_id}: subject number {ordinal} is in no group")
    old = key_set.groups[g]
    if ordinal in old.shredded:
        return old, None
    header, frames = open_block(old.key, get(old.block), key_set.backup_id, g, old.generation)
    sections = []
    for table in header["tables"]:
        entries, frame = frames[table["name"]]
        new_frame, _ = drop_subject(frame, ordinal, marks[table["name"]]) if entries else (frame, 0)
        sections.append((table["name"], entries, new_frame))
    new = Group(
        g,
        old.generation + 1,
        block_key(location, key_set.backup_id, g, old.generation + 1, os.urandom(4).hex()),
        os.urandom(32),
    )
    new.shredded = sorted([*old.shredded, ordinal])
    put(new.block, seal_block(new.key, key_set.backup_id, g, new.generation, sections, new.shredded))
    _, back = open_block(new.key, get(new.block), key_set.backup_id, g, new.generation)
    for name, (_, frame) in back.items():
        kept = marks[name]
        for _, n, row, _ in _entries(frame):
            if n == ordinal and any(row.split(b"\t")[p] != value for p, value in kept.items()):
                raise BackupError(
                    f"backup {key_set.backup_id}: the new block of group {g} still holds the subject"
                )
    key_set.groups[g] = new
    return new, old
