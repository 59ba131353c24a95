"""Audit records for the work a command did: one per host and action, appended over the command's
own connections when it has them. Problems are warnings, never failures of the command that did the work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .audit import append
from .host_manifest import host_secrets
from .pyinfra_glue.inventory_files import load_inventory
from .pyinfra_glue.runner import DeployRun


def record_audit(root: Path, inventory_file: Path | None, entries: list, echo: Callable[[str], None] | None = None,
                 run: DeployRun | None = None) -> None:
    """Append ``entries`` to their hosts' audit trails. The secrets the hosts' configuration declares
    are the values the audit guard keeps out of records."""
    inventory = run.state.inventory if run else load_inventory(inventory_file, root)
    secrets: set[str] = set()
    for host in inventory:
        secrets |= set(host_secrets(host, root).values())
    sessions, heads = (run.sessions(), run.result.audit_heads) if run else (None, None)
    for name, result in append(inventory_file, root, entries, secrets=secrets, sessions=sessions,
                               heads=heads).items():
        problem = result.error or result.warning
        if problem and echo:
            echo(f"vsa-ops: audit on {name}: {problem}")
