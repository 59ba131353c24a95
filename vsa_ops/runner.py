"""Runs the project's deploy.py with the pyinfra CLI, so `vsa-ops deploy`, `add-domain` and
`pyinfra` are one path. Output streams through; the failing step is read from it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
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
    run_id = uuid.uuid4().hex[:10]
    process = subprocess.Popen(command, cwd=root, env=os.environ | (env or {}) | {"VSA_RUN_ID": run_id},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    if returncode:
        failed = failed or step or "preparing the deploy"
        release_lock(root, inventory, run_id, limits)
    return DeployResult(returncode, "".join(lines), failed)


def release_lock(root: Path, inventory: Path, run_id: str, limits: list[str] | None) -> None:
    """A run that failed stops before its last operation: give back the lock it may still hold."""
    from .facts.host_state import LOCK_DIR
    from .remote import run_on_hosts

    command = (f"[ \"$(cut -d' ' -f1 {LOCK_DIR}/owner 2>/dev/null)\" = {shlex.quote(run_id)} ] "
               f"&& rm -rf {LOCK_DIR}; true")
    for limit in limits or [None]:
        try:
            run_on_hosts(inventory, root, lambda host: command, limit)
        except Exception:  # unreachable hosts keep the lock until it goes stale
            pass
