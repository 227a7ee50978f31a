"""Restore a backup into a scratch database and prove it holds what was backed up.

Every chunk is decrypted (AES-GCM authenticates it, bound to its backup, table, index and position)
and loaded into a scratch SQLite database; then the rows are read back *from that database* and
their hash and count compared with the manifest. The scratch copy is removed afterwards, also when
the restore fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from sqlalchemy.engine import Engine

from dereg.backup import catalog
from dereg.backup.codec import (
    FORMAT_VERSION,
    associated_data,
    decode_for_scratch,
    encode_row,
    open_sealed,
    scratch_type,
)
from dereg.backup.s3 import S3Location
from dereg.errors import BackupError, KeyringError

INSERT_BATCH = 2000


@dataclass
class RestoreReport:
    backup_id: str
    ok: bool
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _get(client, location: S3Location, key: str) -> bytes:
    return client.get_object(Bucket=location.bucket, Key=key)["Body"].read()


def _wrapped_key(backup_id: str, store: Engine, client, location: S3Location) -> tuple[str, bytes]:
    found = catalog.wrapped_key(store, backup_id)
    if found is not None:
        return found[0], base64.b64decode(found[1])
    try:  # not in this compliance store: fall back to the escrow copy
        escrow = json.loads(_get(client, location, location.key("_escrow", f"{backup_id}.json")))
        return escrow["kek_id"], base64.b64decode(escrow["wrapped_key"])
    except (ClientError, BotoCoreError, ValueError, KeyError):
        raise KeyringError(
            f"no wrapped data key for backup {backup_id} in the compliance store or in "
            f"{location.describe()}/_escrow: the backup cannot be decrypted (it may have been "
            "crypto-shredded)"
        ) from None


def _restored_order(scratch: Engine, table: sa.Table, spec: dict) -> list:
    """Insertion order on SQLite (rowid: immune to collation differences); else the primary key."""
    if scratch.dialect.name == "sqlite":
        return [sa.literal_column("rowid")]
    return [table.c[name] for name in spec.get("primary_key") or []] or list(table.columns)


def _restore_table(
    scratch: Engine,
    name: str,
    spec: dict,
    *,
    backup_id: str,
    data_key: bytes,
    client,
    location: S3Location,
    problems: list[str],
) -> dict[str, Any]:
    kinds = [c["kind"] for c in spec["columns"]]
    table = sa.Table(
        name, sa.MetaData(), *[sa.Column(c["name"], scratch_type(c["kind"])) for c in spec["columns"]]
    )
    table.create(scratch)
    chunks = spec["chunks"]
    for index, key in enumerate(chunks):
        try:
            blob = _get(client, location, key)
        except ClientError as exc:
            problems.append(
                f"{name}: chunk {index} ({key}) cannot be read ({exc.response['Error'].get('Code')})"
            )
            break
        try:
            plaintext = open_sealed(
                data_key, blob, associated_data(backup_id, name, index, index == len(chunks) - 1)
            )
        except InvalidTag:
            problems.append(
                f"{name}: chunk {index} ({key}) fails authentication: it was altered, truncated or "
                "belongs to another backup"
            )
            break
        # split on b"\n" only: str.splitlines() would also cut at U+2028, U+0085... inside values
        rows = [json.loads(line) for line in plaintext.split(b"\n") if line]
        try:
            with scratch.begin() as conn:
                for start in range(0, len(rows), INSERT_BATCH):
                    batch = rows[start : start + INSERT_BATCH]
                    conn.execute(
                        table.insert(),
                        [
                            {
                                c.name: decode_for_scratch(v, k)
                                for c, v, k in zip(table.columns, row, kinds, strict=True)
                            }
                            for row in batch
                        ],
                    )
        except sa.exc.SQLAlchemyError as exc:
            # the driver's message quotes the rows: report the error class only
            problems.append(
                f"{name}: rows of chunk {index} ({key}) cannot be loaded into the scratch database "
                f"({type(getattr(exc, 'orig', None) or exc).__name__})"
            )
            break
    digest, count = hashlib.sha256(), 0
    with scratch.connect() as conn:
        for row in conn.execute(sa.select(*table.columns).order_by(*_restored_order(scratch, table, spec))):
            digest.update(encode_row(row, kinds))
            count += 1
    ok = count == spec["rows"] and digest.hexdigest() == spec["sha256"]
    if count != spec["rows"]:
        problems.append(f"{name}: {count} rows restored, the manifest says {spec['rows']}")
    elif digest.hexdigest() != spec["sha256"]:
        problems.append(f"{name}: content hash of the restored rows differs from the manifest")
    return {
        "expected_rows": spec["rows"],
        "restored_rows": count,
        "expected_sha256": spec["sha256"],
        "restored_sha256": digest.hexdigest(),
        "ok": ok,
    }


def restore_and_verify(
    backup_id: str,
    *,
    location: S3Location,
    keyring,
    store: Engine,
    into_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RestoreReport:
    t0 = time.monotonic()
    report = RestoreReport(backup_id=backup_id, ok=False)
    client = location.client()
    record = catalog.get(store, backup_id)
    manifest_key = record["manifest_key"] if record else location.key(backup_id, "manifest.json")
    try:
        manifest = json.loads(_get(client, location, manifest_key))
    except ClientError as exc:
        raise BackupError(
            f"the manifest {manifest_key} of backup {backup_id} cannot be read from "
            f"{location.describe()} ({exc.response['Error'].get('Code')})"
        ) from None
    except BotoCoreError as exc:
        raise BackupError(f"S3 store {location.describe()} is unreachable ({type(exc).__name__})") from None
    except ValueError:
        raise BackupError(f"the manifest {manifest_key} of backup {backup_id} is not valid JSON") from None
    if manifest.get("format") != "dereg-backup" or manifest.get("version") != FORMAT_VERSION:
        raise BackupError(
            f"{manifest_key} is not a version {FORMAT_VERSION} Dereg backup manifest (format "
            f"{manifest.get('format')!r}, version {manifest.get('version')!r}); use a matching Dereg"
        )
    if manifest.get("backup_id") != backup_id:
        raise BackupError(
            f"{manifest_key} is the manifest of {manifest.get('backup_id')}, not of {backup_id}"
        )
    kek_id, wrapped = _wrapped_key(backup_id, store, client, location)
    data_key = keyring.unwrap_data_key(kek_id, wrapped, what=f"the data key of backup {backup_id}")
    if manifest.get("kind") == "objects":  # an object source: restored into a scratch directory
        from dereg.backup.objects import restore_objects

        restore_objects(
            manifest, data_key=data_key, client=client, location=location, report=report, progress=progress
        )
        report.ok = not report.problems and all(t["ok"] for t in report.tables.values())
        report.seconds = time.monotonic() - t0
        return report
    workdir = None
    if into_url is None:
        workdir = Path(tempfile.mkdtemp(prefix="dereg-restore-"))
        into_url = f"sqlite:///{workdir / 'scratch.db'}"
    scratch = sa.create_engine(into_url)
    try:
        for name in manifest["table_order"]:
            report.tables[name] = _restore_table(
                scratch,
                name,
                manifest["tables"][name],
                backup_id=backup_id,
                data_key=data_key,
                client=client,
                location=location,
                problems=report.problems,
            )
            if progress:
                t = report.tables[name]
                progress(
                    f"restore {name}: {t['restored_rows']}/{t['expected_rows']} rows, "
                    f"{'ok' if t['ok'] else 'MISMATCH'}"
                )
    finally:
        scratch.dispose()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    report.ok = not report.problems and all(t["ok"] for t in report.tables.values())
    report.seconds = time.monotonic() - t0
    return report
