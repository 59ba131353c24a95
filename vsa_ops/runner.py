"""Runs the project's deploy.py with the pyinfra CLI, so `vsa-ops deploy`, `add-domain` and
`pyinfra` are one path. Output streams through; the failing step is read from it."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

_START = re.compile(r"--> Starting operation: (?:vsa-ops hub \| )?(.*?)\s*$")
_ERROR = re.compile(r"^\s+\[([^\]]+)\] Error")
# The deploy writes each host's plan summary here (JSON), for the audit record.
REPORT_ENV = "VSA_REPORT_FILE"


@dataclass
class DeployResult:
    returncode: int
    output: str
    failed_step: str | None
    summaries: dict[str, str] = field(default_factory=dict)  # host -> what its plan changed
    failed_hosts: set[str] = field(default_factory=set)
    duration: float = 0.0


def run_deploy(root: Path, inventory: Path, limits: list[str] | None = None, env: dict[str, str] | None = None,
               echo=None) -> DeployResult:
    command = [sys.executable, "-m", "pyinfra", "-y", str(inventory), "deploy.py"]
    for limit in limits or []:
        command += ["--limit", limit]
    run_id = uuid.uuid4().hex[:10]
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=os.environ | (env or {}) | {"VSA_RUN_ID": run_id, REPORT_ENV: str(report)})
        lines, step, failed, failed_hosts = [], None, None, set()
        for line in process.stdout:
            lines.append(line)
            if echo:
                echo(line.rstrip("\n"))
            started = _START.search(line)
            error = _ERROR.search(line)
            if started:
                step = started.group(1)
            elif error:
                failed = failed or step
                failed_hosts.add(error.group(1))
        returncode = process.wait()
        summaries = json.loads(report.read_text()) if report.exists() else {}
    if returncode:
        failed = failed or step or "preparing the deploy"
        release_lock(root, inventory, run_id, limits)
    return DeployResult(returncode, "".join(lines), failed, summaries, failed_hosts, time.monotonic() - start)


def write_report(host_name: str, summary: str) -> None:
    """Called by the deploy for each host: what its plan changes, for the caller's audit record."""
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    report = Path(path)
    data = json.loads(report.read_text()) if report.exists() else {}
    data[host_name] = summary
    report.write_text(json.dumps(data))


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


def audit(root: Path, inventory: Path, entries: list, echo=None) -> None:
    """Append audit records (one per host and action) to the hosts; problems are warnings, never
    failures of the command that did the work. Secret values of the project are refused in records."""
    from .audit import append
    from .inventory import load_inventory
    from .project import load_secrets

    secrets = set(load_secrets(root).values())
    for host in load_inventory(inventory, root):
        named = host.data.get("vsa_secrets_file")
        if named:
            secrets |= set(load_secrets(root, file=Path(named)).values())
    for name, result in append(inventory, root, entries, secrets=secrets).items():
        problem = result.error or result.warning
        if problem and echo:
            echo(f"vsa-ops: audit on {name}: {problem}")
