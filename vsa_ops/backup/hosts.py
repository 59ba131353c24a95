"""Run the backup stack's program on hosts: a backup now, the snapshot list, what a restore would
overwrite, a restore. Each is one ``docker exec`` in the host's backup container over SSH; its output
is ``word rest`` lines, the last ``result ok`` or ``error <why>``."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..audit.host_scripts import fields
from ..config.backup import SCRIPT
from ..errors import VsaError
from ..inventory import InventoryError, host_config, limited
from ..plan_identity import refuse_plan_identity
from ..pyinfra_glue.connections import connected
from ..pyinfra_glue.inventory_files import load_inventory


class BackupError(VsaError):
    pass


@dataclass
class HostRun:
    """One host's answer: ``fields`` by word, ``error`` when the run failed (one line)."""

    host: str
    fields: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _command(host, action: str) -> str | None:
    """The command for ``action`` on ``host``; None when backups are off there."""
    backup = host_config(host).backup
    if not backup.enabled:
        return None
    container = shlex.quote(backup.runner.container.container_name)
    return (f"if ! docker inspect -f '{{{{.State.Running}}}}' {container} 2>/dev/null | grep -qx true; then "
            f"echo 'error the backup stack is not running (container {container}): run vsa-ops deploy'; exit 1; fi; "
            f"docker exec {container} /bin/sh {SCRIPT} {action} 2>&1")


def hosts_of(inventory_file: Path, root: Path, limit: str | None) -> list:
    hosts = limited(load_inventory(inventory_file, root), [limit] if limit else None)
    if not hosts:
        raise InventoryError(f"--limit: no host or group {limit!r} in the inventory")
    refuse_plan_identity(hosts, "backup")
    return hosts


def run_on(inventory_file: Path, root: Path, limit: str | None, action: str,
           progress: Callable[[str], None] | None = None) -> dict[str, HostRun]:
    """``action`` (run, snapshots, holds, restore ID) on each selected host, one after another."""
    hosts = hosts_of(inventory_file, root, limit)
    commands = {host.name: _command(host, action) for host in hosts}
    runs = {name: HostRun(name, error="backups are off (vsa.backup.repository is not set)")
            for name, command in commands.items() if command is None}
    on = [host for host in hosts if commands[host.name] is not None]
    if not on:
        return runs
    with connected(inventory_file, root, [h.name for h in on]) as sessions:
        for host in on:
            command = commands[host.name]
            session = sessions.get(host.name, "not connected")
            if isinstance(session, str):
                runs[host.name] = HostRun(host.name, error=session)
                continue
            if progress:
                progress(f"{host.name}: {action.split()[0]} ...")
            started = time.monotonic()
            ok, stdout = session[1](command)
            runs[host.name] = parse(host.name, ok, stdout, time.monotonic() - started)
    return runs


def parse(host: str, ok: bool, stdout: str, duration: float) -> HostRun:
    lines = [line for line in stdout.splitlines() if line.strip()]
    run = HostRun(host, fields(stdout), lines, duration=duration)
    if "error" in run.fields:
        run.error = run.fields["error"]
    elif not ok:
        run.error = (lines[-1] if lines else "failed without output")[:300]
    return run


def snapshots(inventory_file: Path, root: Path, limit: str | None) -> dict[str, list[dict] | str]:
    """Each host's snapshots (oldest first) as restic lists them, or why they could not be listed."""
    found: dict[str, list[dict] | str] = {}
    for name, run in run_on(inventory_file, root, limit, "snapshots").items():
        if run.fields.get("error") or not run.lines:
            found[name] = run.error or "no answer"
            continue
        try:
            found[name] = json.loads("\n".join(run.lines))
        except ValueError:
            found[name] = f"unreadable snapshot list: {run.lines[-1][:200]}"
    return found


def holds(run: HostRun) -> dict[str, int]:
    """``holds`` lines as counts: postgres_rows, certificates, grafana_files, audit_records."""
    counts = {}
    for line in run.lines:
        word, _, rest = line.partition(" ")
        name, _, number = rest.partition(" ")
        if word == "holds" and number.isdigit():
            counts[name] = int(number)
    return counts
