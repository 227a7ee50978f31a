"""The `dereg` command leaves the process at once after its work (`cli.run`): its output is all
there and its exit status is the command's."""

from __future__ import annotations

import subprocess
import sys


def _dereg(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dereg.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_a_command_that_succeeds_exits_0_with_all_its_output(tmp_path):
    done = _dereg("keyring", "init", "--path", str(tmp_path / "ring.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"keyring written to {tmp_path / 'ring.json'} (mode 600)"
    assert lines[-1].startswith("Keep a copy off this machine")
    assert (tmp_path / "ring.json").exists()


def test_a_command_that_fails_exits_2_with_its_message(tmp_path):
    (tmp_path / "ring.json").write_text("{}")
    done = _dereg("keyring", "init", "--path", str(tmp_path / "ring.json"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("dereg: error: "), done.stderr
    assert done.stdout == ""


def test_a_retention_of_no_days_is_refused_before_anything_is_written(tmp_path):
    """`--retention-days 0` used to start the backup and fail at the first chunk with the store's
    InvalidRequest, blamed on the bucket and credentials, leaving a failed backup in the catalog."""
    for days in ("0", "-3", "ten"):
        done = _dereg("backup", "sqlite:///x.db", "--to", "s3://b/p", "--retention-days", days, cwd=tmp_path)
        assert done.returncode == 2 and "--retention-days" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())  # no store, no keyring, no database created
