"""Row serialisation, table descriptions and chunk encryption shared by the backup writers and the restore.

Version 2 stores PostgreSQL tables as the server's own `COPY ... TO STDOUT` text stream (see
pgcopy.py); other sources, and every version 1 backup, use the JSON rows below. Version 3 adds the
manifest's MAC (`manifest_mac`, under a key derived from the data key), object keys made from an
encoding of the table name (`object_name`), and chunks that may end inside a line. Rows are JSON
arrays, one per line, each value encoded according to its column's *kind* (so that a
value read back from a different database encodes to the same bytes). Chunks of lines are
compressed with zstd, then sealed with AES-256-GCM under the backup's data key; the associated
data binds the backup id, table, chunk index and whether it is the last chunk. Layout: see
docs/backup-format.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import hmac
import json
import os
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dereg.dialects import type_text

FORMAT_VERSION = 7
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6, 7)
#: the first version that may store small tables together in a pack (`tables.<name>.pack`)
PACK_VERSION = 6
#: the first version whose small `pg-copy-text` tables may be in packs too (pgcopy.py)
PG_PACK_VERSION = 7
#: the first version that may seal subject rows under per-subject keys (`subject_keys`, subjectkeys.py)
SUBJECT_KEYS_VERSION = 5
#: the first version whose sealed rows are AES-256-CTR without a tag of their own (version 5: AES-GCM
#: per row, with its 16-byte tag and associated data)
SUBJECT_CTR_VERSION = 6
#: the first version that keeps the sealed values of a group of subjects together in one block under a
#: key of that group (`subject_keys.scheme` group-blocks, groupkeys.py); versions 5 and 6 still restore
GROUP_KEYS_VERSION = 7
#: the last version whose per-subject keys are a GGM tree with one key per subject (subjectkeys.py);
#: `create_backup(..., subject_scheme="ggm")` still writes it, for comparison
GGM_VERSION = 6
#: the first version that carries the source's schema (`schema` in the manifest)
SCHEMA_VERSION = 4
#: the first version whose manifest carries a MAC (older manifests restore, unauthenticated)
MAC_VERSION = 3
MANIFEST_MAC = "manifest_mac"
CHUNK_BYTES = 2 * 1024 * 1024
ZSTD_LEVEL = 1
NONCE_BYTES = 12
KINDS = ("int", "float", "decimal", "bool", "date", "datetime", "bytes", "str", "other")


def kind_of(type_: sa.types.TypeEngine) -> str:
    """The value kind of a reflected column type."""
    try:
        python_type = type_.python_type
    except NotImplementedError:
        return "other"
    if python_type is bool:
        return "bool"
    if python_type is int:
        return "int"
    if python_type is float:
        return "float"
    if python_type is decimal.Decimal:
        return "decimal"
    if python_type is dt.datetime:
        return "datetime"
    if python_type is dt.date:
        return "date"
    if python_type is bytes:
        return "bytes"
    if python_type is str:
        return "str"
    return "other"


def encode_value(value: Any, kind: str) -> Any:
    """A JSON-ready form of `value`; identical for equal values whichever database they came from."""
    if value is None:
        return None
    if kind == "int":
        # SQLite's loose typing lets an INTEGER column hold 1.5 or text: keep it as text, never truncate
        return int(value) if isinstance(value, int) else {"s": str(value)}
    if kind == "float":
        return float(value) if isinstance(value, int | float) else {"s": str(value)}
    if kind == "bool":
        return bool(value)
    if kind == "decimal":
        return {"d": str(value)}
    if kind == "date":
        return {"date": value if isinstance(value, str) else value.isoformat()}
    if kind == "datetime":
        return {"dt": value if isinstance(value, str) else value.isoformat()}
    if kind == "bytes":
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if kind == "str":
        return str(value)
    if isinstance(value, dict | list):
        return {"s": json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)}
    return {"s": str(value)}


def decode_for_scratch(value: Any, kind: str) -> Any:
    """The Python value to insert into a scratch table column of `scratch_type(kind)`."""
    if value is None or not isinstance(value, dict):
        return value
    if "b64" in value:
        return base64.b64decode(value["b64"])
    return next(iter(value.values()))  # d / date / dt / s: kept as exact text in the scratch copy


class _ScratchDouble(sa.types.UserDefinedType):
    """A double-precision column without SQLAlchemy's float coercion, so a value kept as text (see
    encode_value) is stored as it came (SQLite keeps it as text) instead of failing the restore."""

    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "DOUBLE PRECISION"


def scratch_type(kind: str) -> sa.types.TypeEngine:
    return {
        "int": sa.BigInteger(),
        "float": _ScratchDouble(),
        "bool": sa.Boolean(),
        "bytes": sa.LargeBinary(),
    }.get(kind, sa.Text())


def encode_row(row, kinds: list[str]) -> bytes:
    values = [encode_value(v, k) for v, k in zip(row, kinds, strict=True)]
    return (json.dumps(values, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def associated_data(
    backup_id: str, table: str, index: int, last: bool, version: int = FORMAT_VERSION
) -> bytes:
    """What a chunk's GCM tag binds: format version, backup, table (or stream), position, last flag."""
    return f"dereg-backup/{version}|{backup_id}|{table}|{index}|{1 if last else 0}".encode()


def schema_associated_data(
    backup_id: str, section: str, index: int, last: bool, version: int = FORMAT_VERSION
) -> bytes:
    """What a schema chunk's GCM tag binds (version 4): its own prefix, so no table's chunk (whatever
    the table is called) can stand in for a schema section's, nor the other way round."""
    return f"dereg-backup-schema/{version}|{backup_id}|{section}|{index}|{1 if last else 0}".encode()


def pack_associated_data(
    backup_id: str, pack: str, index: int, last: bool, version: int = FORMAT_VERSION
) -> bytes:
    """What a pack chunk's GCM tag binds (version 6): its own prefix, the pack's name and position,
    so no table's or schema section's chunk can stand in for it, nor the other way round."""
    return f"dereg-backup-pack/{version}|{backup_id}|{pack}|{index}|{1 if last else 0}".encode()


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # a ZstdCompressor must not be shared between threads; one per upload thread is reused
    comp = getattr(_local, "compressor", None)
    if comp is None:
        comp = _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return comp


#: the chunk algorithms this release reads (the manifest's `cipher` and `compression`). A later change
#: of algorithm is a new entry here and a new format version: older backups keep restoring.
CIPHERS = frozenset({"AES-256-GCM"})
COMPRESSIONS = frozenset({"zstd"})


def unsupported_algorithms(manifest: dict) -> list[str]:
    """The manifest's chunk algorithms this release cannot open (a version 1 manifest may omit them:
    it was written with AES-256-GCM over zstd)."""
    wrong = []
    if manifest.get("cipher", "AES-256-GCM") not in CIPHERS:
        wrong.append(f"cipher {str(manifest.get('cipher'))[:40]!r}")
    if manifest.get("compression", "zstd") not in COMPRESSIONS:
        wrong.append(f"compression {str(manifest.get('compression'))[:40]!r}")
    return wrong


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    compressed = _compressor().compress(plaintext)
    return nonce + AESGCM(key).encrypt(nonce, compressed, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Decrypt and decompress a chunk; raises cryptography's InvalidTag if anything was altered."""
    nonce, ciphertext = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
    return zstandard.ZstdDecompressor().decompress(AESGCM(key).decrypt(nonce, ciphertext, aad))


def describe_columns(table: sa.Table, kinds: list[str]) -> list[dict[str, Any]]:
    """The manifest's `columns` of a json-rows table: name, kind, type, nullable, primary key."""
    return [
        {
            "name": c.name,
            "kind": k,
            "type": type_text(c.type),
            "nullable": bool(c.nullable),
            "primary_key": bool(c.primary_key),
        }
        for c, k in zip(table.columns, kinds, strict=True)
    ]


def describe_keys(table: sa.Table) -> dict[str, Any]:
    """The manifest's primary and foreign keys of a table."""
    return {
        "primary_key": [c.name for c in table.primary_key.columns],
        "foreign_keys": [
            {
                "columns": [e.parent.name for e in fk.elements],
                "ref_table": fk.referred_table.name,
                "ref_columns": [e.column.name for e in fk.elements],
            }
            for fk in table.foreign_key_constraints
        ],
    }


def restored_result(name: str, spec: dict, count: int, digest: str, problems: list[str]) -> dict[str, Any]:
    """A restored table's verdict: its row count and content hash against the manifest's `spec`
    (a mismatch is added to `problems`)."""
    ok = count == spec["rows"] and digest == spec["sha256"]
    if count != spec["rows"]:
        problems.append(f"{name}: {count} rows restored, the manifest says {spec['rows']}")
    elif digest != spec["sha256"]:
        problems.append(f"{name}: content hash of the restored rows differs from the manifest")
    return {
        "expected_rows": spec["rows"],
        "restored_rows": count,
        "expected_sha256": spec["sha256"],
        "restored_sha256": digest,
        "ok": ok,
    }


def object_name(name: str) -> str:
    """The path segment of a table (or stream) in its chunks' object keys (version 3): the name
    percent-encoded (RFC 3986, every byte of its UTF-8 outside `A-Z a-z 0-9 _ -` as `%XX`), so
    every table gets its own segment (`t` and `t/` differ) and no name can climb out of the
    backup's prefix (`..`, `/`). The manifest keeps the real name; readers use its chunk list."""
    return urllib.parse.quote(name, safe="").replace(".", "%2E").replace("~", "%7E")


def manifest_mac_key(data_key: bytes, backup_id: str) -> bytes:
    """The key of a manifest's MAC: HKDF-SHA256 of the data key, no salt, info
    `dereg-backup manifest-mac|<backup_id>` (so it is never the key of a chunk)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"dereg-backup manifest-mac|{backup_id}".encode(),
    ).derive(data_key)


def canonical_manifest(manifest: dict[str, Any]) -> bytes:
    """The bytes a manifest's MAC covers: the manifest without `manifest_mac`, as JSON with sorted
    keys, no whitespace and non-ASCII characters as UTF-8."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_MAC}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def manifest_mac(data_key: bytes, manifest: dict[str, Any]) -> str:
    """HMAC-SHA256 (hex) of the canonical manifest under `manifest_mac_key`."""
    key = manifest_mac_key(data_key, str(manifest.get("backup_id")))
    return hmac.new(key, canonical_manifest(manifest), hashlib.sha256).hexdigest()


def manifest_is_authentic(data_key: bytes, manifest: dict[str, Any]) -> bool:
    given = manifest.get(MANIFEST_MAC)
    return isinstance(given, str) and hmac.compare_digest(given, manifest_mac(data_key, manifest))


def whole_lines(pieces: Iterable[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """The lines of a stream given as chunk plaintexts, which may end inside a line (version 3):
    yields (chunk index, the lines completed in that chunk), without their `\\n`. A line spread
    over many chunks is joined once (no copy per chunk); a last line without `\\n` is yielded too."""
    carry: list[bytes] = []
    index = -1
    for index, piece in enumerate(pieces):
        if b"\n" not in piece:
            if piece:
                carry.append(piece)
            continue
        data = b"".join([*carry, piece]) if carry else piece
        lines = data.split(b"\n")
        rest = lines.pop()
        carry = [rest] if rest else []
        yield index, lines
    if carry:
        yield max(index, 0), [b"".join(carry)]
