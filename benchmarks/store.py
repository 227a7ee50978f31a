"""The local S3 store the backup benchmarks run against: a SeaweedFS on free ports, and its client."""

from __future__ import annotations

from pathlib import Path


def start_store(work: Path):
    """A local SeaweedFS with its data under `work` (the caller stops it)."""
    from devtools.stack.ports import free_port
    from devtools.stack.seaweed import start_seaweedfs

    for _ in range(20):  # SeaweedFS also needs each port + 10000 free: pick low enough ones
        s3_port, base = free_port(), free_port()
        if max(s3_port, base + 2) + 10000 > 65535:
            continue
        try:
            return start_seaweedfs(work / "seaweed", s3_port, base_port=base)
        except Exception:  # noqa: BLE001 - a port taken meanwhile; try others
            continue
    raise SystemExit("could not start SeaweedFS on free ports")


def s3_client(server):
    """A boto3 S3 client of `server` (from `start_store`)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )


def dereg_and_restic_buckets(server, work: Path) -> None:
    """Our bucket (Object Lock) and restic's (plain) in `server`, and a keyring in `work`."""
    from dereg.keys import Keyring

    s3 = s3_client(server)
    s3.create_bucket(Bucket="bench-dereg", ObjectLockEnabledForBucket=True)
    s3.create_bucket(Bucket="bench-restic")
    Keyring.create(work / "keyring.json")


def prepare_dereg(work: Path) -> None:
    """What a deployment has before any backup: dereg's modules byte-compiled (as installing a
    package does; an editable checkout run with PYTHONDONTWRITEBYTECODE would compile every module
    again in every timed process) and the compliance store made and migrated, at
    `sqlite:///<work>/compliance.db`. The anchor's counterpart is `restic init`, also untimed."""
    import importlib.util
    import os
    import subprocess
    import sys

    package = importlib.util.find_spec("dereg").submodule_search_locations[0]
    subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True, capture_output=True)
    subprocess.run(
        [sys.executable, "-c", "from dereg.evidence.store import open_store; open_store()"],
        env={**os.environ, "DEREG_STORE_URL": f"sqlite:///{work / 'compliance.db'}"},
        check=True,
    )
