"""Runs the project's deploy.py with the pyinfra CLI, so `vsa-ops deploy`, `add-domain` and
`pyinfra` are one path. Output streams through; the failing step is read from it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_START = re.compile(r"--> Starting operation: (?:vsa-ops hub \| )?(.*?)\s*$")
_ERROR = re.compile(r"^\s+\[[^\]]+\] Error")


@dataclass
class DeployResult:
    returncode: int
    output: str
    failed_step: str | None


def run_deploy(root: Path, inventory: Path, limits: list[str] | None = None, env: dict[str, str] | None = None,
               echo=None) -> DeployResult:
    command = [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"]
    for limit in limits or []:
        command += ["--limit", limit]
    process = subprocess.Popen(command, cwd=root, env=os.environ | (env or {}), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines, step, failed = [], None, None
    for line in process.stdout:
        lines.append(line)
        if echo:
            echo(line.rstrip("\n"))
        started = _START.search(line)
        if started:
            step = started.group(1)
        elif _ERROR.search(line) and failed is None:
            failed = step
    returncode = process.wait()
    if returncode and failed is None:
        failed = step or "preparing the deploy"
    return DeployResult(returncode, "".join(lines), failed)
