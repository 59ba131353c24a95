"""Runs the project's deploy.py with the pyinfra CLI, so `vsa-ops deploy` and `pyinfra` are one path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_deploy(root: Path, inventory: Path, limit: str | None = None, extra: list[str] | None = None) -> int:
    command = [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"]
    if limit:
        command += ["--limit", limit]
    return subprocess.run(command + (extra or []), cwd=root).returncode
