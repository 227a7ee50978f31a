"""Inventory and classification of an S3 prefix: customer files (uploads, exports, photos).

Objects are grouped by folder and file type. The inventory counts objects and bytes per group;
classification reads the text-like objects (CSV, TSV, JSON, JSON Lines, TXT, logs) with the same
detectors as database columns, streamed (a sample reads the first `SAMPLE_BYTES` of each object, a
full scan every byte), uses CSV headers and JSON keys as name hints, and treats images in folders
named for photos, faces or fingerprints as biometrics. Each group becomes one ColumnFinding whose
`table` is the folder and `column` the file type, so reports and the ledger treat files and columns
alike. Object keys may hold personal data themselves (a file named after a person), so keys never
leave this module: only folders, types, counts and masked examples.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from dereg.classify import names
from dereg.classify.engine import _ColumnStats, _conclude, mask
from dereg.classify.scanner import NOT_PERSONAL, spans
from dereg.classify.taxonomy import level_of
from dereg.errors import SourceError
from dereg.model import ClassificationResult, ColumnFinding

log = logging.getLogger(__name__)

TEXT_TYPES = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_TYPES |= {s: "text" for s in (".txt", ".log", ".md", ".xml", ".html", ".htm", ".eml")}
IMAGE_TYPES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".heic", ".tif", ".tiff"}
SAMPLE_BYTES = 4 << 20
CSV_SAMPLE_ROWS = 2000
_PHOTO_WORDS = (
    "photo",
    "avatar",
    "face",
    "portrait",
    "fingerprint",
    "照片",
    "头像",
    "人脸",
    "指纹",
    "zhaopian",
)


@dataclass
class ObjectGroup:
    folder: str  # relative to the source's prefix; "" for the prefix itself
    kind: str  # file suffix, e.g. ".csv"; "(none)" when the key has none
    objects: int = 0
    bytes: int = 0


@dataclass
class ObjectInventory:
    source_id: str
    bucket: str
    prefix: str
    groups: list[ObjectGroup] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(g.objects for g in self.groups)

    @property
    def bytes(self) -> int:
        return sum(g.bytes for g in self.groups)

    def to_dict(self) -> dict:
        return {**asdict(self), "dialect": "s3", "objects": self.objects, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: dict) -> ObjectInventory:
        return cls(
            data["source_id"], data["bucket"], data["prefix"], [ObjectGroup(**g) for g in data["groups"]]
        )


def _split(prefix: str, key: str) -> tuple[str, str]:
    rel = key[len(prefix) :].lstrip("/") if prefix and key.startswith(prefix) else key
    folder = posixpath.dirname(rel)
    suffix = posixpath.splitext(rel)[1].lower() or "(none)"
    return folder, suffix


def _keys(client, bucket: str, prefix: str) -> Iterator[dict]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        yield from page.get("Contents", [])


def _source_error(source_id: str, bucket: str, prefix: str, exc: Exception) -> SourceError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return SourceError(
        f"object source {source_id} (s3://{bucket}/{prefix}): cannot be listed ({code}); check the "
        "connection's endpoint and keys and that they may list and read the bucket"
    )


def inventory_objects(client, source_id: str, bucket: str, prefix: str) -> ObjectInventory:
    """Objects and bytes per folder and file type under `prefix`."""
    from botocore.exceptions import BotoCoreError, ClientError

    groups: dict[tuple[str, str], ObjectGroup] = {}
    try:
        for obj in _keys(client, bucket, prefix):
            folder, kind = _split(prefix, obj["Key"])
            group = groups.setdefault((folder, kind), ObjectGroup(folder, kind))
            group.objects += 1
            group.bytes += int(obj.get("Size", 0))
    except (BotoCoreError, ClientError) as exc:
        raise _source_error(source_id, bucket, prefix, exc) from exc
    inventory = ObjectInventory(
        source_id, bucket, prefix, sorted(groups.values(), key=lambda g: (g.folder, g.kind))
    )
    log.info("inventory of %s: %d objects, %d bytes", source_id, inventory.objects, inventory.bytes)
    return inventory


def _text_stream(body, limit: int | None) -> Iterator[str]:
    """Decoded text of an object body, chunk by chunk: UTF-8 (with or without BOM), else GB18030,
    the encoding of most Chinese spreadsheet exports."""
    read = 0
    decoder = None
    for chunk in body.iter_chunks(chunk_size=1 << 20):
        if limit is not None and read >= limit:
            break
        if limit is not None:
            chunk = chunk[: limit - read]
        read += len(chunk)
        if decoder is None:
            try:
                chunk.decode("utf-8-sig")
                decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
            except UnicodeDecodeError as exc:
                # a multi-byte character cut at the chunk's end is still UTF-8
                tail_cut = exc.start >= len(chunk) - 3
                name = "utf-8-sig" if tail_cut else "gb18030"
                decoder = codecs.getincrementaldecoder(name)(errors="replace")
        yield decoder.decode(chunk)
    if decoder is not None:
        yield decoder.decode(b"", final=True)


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    pending = ""
    for chunk in chunks:
        data = pending + chunk
        parts = data.split("\n")
        pending = parts.pop()
        yield from parts
    if pending:
        yield pending


@dataclass
class _GroupScan:
    lines: int = 0
    hit_lines: int = 0
    objects_with_hits: int = 0
    unreadable: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    from_columns: dict[str, str] = field(default_factory=dict)  # category -> why (CSV header, JSON key)

    def add_line(self, line: str) -> bool:
        self.lines += 1
        found = [s for s in spans(line) if s[0] not in NOT_PERSONAL]
        if not found:
            return False
        self.hit_lines += 1
        for cat in {s[0] for s in found}:
            self.categories[cat] = self.categories.get(cat, 0) + 1
        for cat, _, _, value in found:
            masked = mask(cat, value)
            if len(self.examples) < 3 and masked not in self.examples:
                self.examples.append(masked)
        return True


def _scan_csv(lines: Iterator[str], delimiter: str, scan: _GroupScan) -> bool:
    reader = csv.reader(lines, delimiter=delimiter)
    header = next(reader, None)
    if not header:
        return False
    stats = [_ColumnStats(hinted=tuple(names.hints(h.strip()))) for h in header]
    hit = False
    for n, row in enumerate(reader):
        hit = scan.add_line(delimiter.join(row)) or hit
        if n < CSV_SAMPLE_ROWS:
            for i, value in enumerate(row[: len(header)]):
                stats[i].add(value)
    for column, s in zip(header, stats, strict=True):
        finding = _conclude("csv", column.strip(), "", s)
        for cat in finding.categories:
            if cat not in scan.categories and cat not in scan.from_columns:
                scan.from_columns[cat] = f"CSV column {column.strip()!r}: {finding.reason}"
    return hit


def _scan_json(text: str, scan: _GroupScan) -> bool:
    hit = any([scan.add_line(line) for line in text.splitlines()])
    try:
        document = json.loads(text)
    except ValueError:
        return hit
    stats = _ColumnStats()
    stats._add_json(document)
    for cat, _ in stats.json_found.items():
        scan.from_columns.setdefault(cat, f"JSON key naming {cat}")
    return hit


def classify_objects(
    client,
    inventory: ObjectInventory,
    *,
    full: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ClassificationResult:
    """One finding per folder and file type; text objects read (first SAMPLE_BYTES, or all with `full`)."""
    from botocore.exceptions import BotoCoreError, ClientError

    limit = None if full else SAMPLE_BYTES
    scans: dict[tuple[str, str], _GroupScan] = {}
    result = ClassificationResult(
        source_id=inventory.source_id, columns=[], mode="full" if full else "sample"
    )
    try:
        for obj in _keys(client, inventory.bucket, inventory.prefix):
            folder, kind = _split(inventory.prefix, obj["Key"])
            kind_name = TEXT_TYPES.get(kind)
            if kind_name is None:
                continue
            scan = scans.setdefault((folder, kind), _GroupScan())
            try:
                body = client.get_object(Bucket=inventory.bucket, Key=obj["Key"])["Body"]
                chunks = _text_stream(body, limit)
                if kind_name in ("csv", "tsv"):
                    hit = _scan_csv(_lines(chunks), "," if kind_name == "csv" else "\t", scan)
                elif kind_name == "json" and int(obj.get("Size", 0)) <= SAMPLE_BYTES:
                    hit = _scan_json("".join(chunks), scan)
                else:
                    hit = False
                    for line in _lines(chunks):
                        hit = scan.add_line(line) or hit
            except (BotoCoreError, ClientError, OSError) as exc:
                scan.unreadable += 1
                log.warning(
                    "object source %s: an object in %r cannot be read (%s)",
                    inventory.source_id,
                    folder,
                    type(exc).__name__,
                )
                continue
            scan.objects_with_hits += int(hit)
    except (BotoCoreError, ClientError) as exc:
        raise _source_error(inventory.source_id, inventory.bucket, inventory.prefix, exc) from exc

    for group in inventory.groups:
        where = group.folder or "(prefix root)"
        scan = scans.get((group.folder, group.kind))
        categories: list[str] = []
        reasons: list[str] = []
        if group.kind in IMAGE_TYPES:
            if any(w in group.folder.lower() for w in _PHOTO_WORDS) or any(
                "biometric_face" in names.hints(part) for part in group.folder.split("/")
            ):
                categories.append("biometric_face")
                reasons.append(f"{group.objects} images in a folder named for photos, faces or fingerprints")
            else:
                reasons.append(f"{group.objects} images; the folder's name does not say they show people")
        elif scan is None:
            reasons.append(f"{group.objects} objects of a type that is not read (binary)")
        else:
            for cat, k in sorted(scan.categories.items(), key=lambda kv: -kv[1]):
                categories.append(cat)
                reasons.append(f"{k} of {scan.lines} lines hold valid {cat}")
            for cat, why in scan.from_columns.items():
                if cat not in categories:
                    categories.append(cat)
                    reasons.append(why)
            if scan.unreadable:
                reasons.append(f"{scan.unreadable} objects could not be read")
                result.problems.append(
                    {
                        "table": f"{where}/*{group.kind}",
                        "reason": f"{scan.unreadable} objects could not be read",
                    }
                )
            if not reasons:
                reasons.append(f"no personal information in {scan.lines} lines of {group.objects} objects")
        result.columns.append(
            ColumnFinding(
                table=where,
                column=f"*{group.kind}",
                categories=categories,
                level=level_of(categories),
                values_checked=scan.lines if scan else group.objects,
                matches=scan.hit_lines if scan else (group.objects if categories else 0),
                masked_examples=list(scan.examples) if scan else [],
                reason="; ".join(reasons),
                type="objects",
            )
        )
        if progress:
            progress(f"classified {where}/*{group.kind}: {group.objects} objects")
    return result
