"""What a Python snippet prints under different hash seeds (tests of results that must not follow a
set's order, which changes with PYTHONHASHSEED from one process to the next)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable


def printed_under_seeds(script: str, seeds: Iterable[str]) -> set[str]:
    """The distinct outputs of `python -c script`, run once per PYTHONHASHSEED in `seeds`."""
    return {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in seeds
    }
