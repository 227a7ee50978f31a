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
