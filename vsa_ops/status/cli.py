"""``vsa-ops status``: one screen per host; exit 0 when everything is up and matches the code, 1
naming what is down, expiring or drifted."""

from __future__ import annotations

import json
import sys

import click

from ..backup.spool import ingest as ingest_spool
from ..cli_support import inventory_option, limit_option
from ..inventory import inventory_path
from ..project import find_root
from .checks import HostStatus
from .service import status as read_status


@click.command()
@inventory_option
@limit_option
@click.option("--json", "as_json", is_flag=True, help="Every container, domain and check, machine-readable.")
def status(inventory: str | None, limit: str | None, as_json: bool):
    """Is the hub healthy? Containers, domains, drift, last deploy and backup, per host.
    Exit 0: all up and matching the code; 1: something is down, expiring within 14 days or drifted."""
    root, path = find_root(), inventory_path(inventory).resolve()
    ingest_spool(path, root, limit, lambda line: click.echo(line, err=True))  # scheduled backups: audit first
    hosts = read_status(root, path, limit)
    if as_json:
        click.echo(json.dumps({"ok": all(h.ok for h in hosts), "hosts": [h.as_dict() for h in hosts]},
                              indent=2, default=str))
    else:
        for host in hosts:
            click.echo(screen(host))
    for host in hosts:
        for problem in host.problems:
            click.echo(f"vsa-ops: {host.host}: {problem}", err=True)
    sys.exit(0 if all(h.ok for h in hosts) else 1)


def screen(host: HostStatus) -> str:
    """One host's screen: a line per container and domain, then drift and the audit trail."""
    if host.error:
        return f"{host.host}: NOT READ: {host.error}\n"
    lines = [f"{host.host}: {'ok' if host.ok else f'{len(host.problems)} problem(s)'}"]
    width = max((len(c["name"]) for c in host.containers), default=0)
    lines.append(f"  containers ({len(host.containers)})")
    for c in host.containers:
        health = f" {c['health']}" if c["health"] else ""
        lines.append(f"    {c['name']:<{width}}  {c['state']}{health}, restarts {c['restarts']}")
    lines.append(f"  domains ({len(host.domains)})")
    by_name = {check.name: check for check in host.checks}
    for d in host.domains:
        check = by_name[f"domain {d['domain']}"]
        lines.append(f"    {d['domain']}: {'' if check.ok else 'PROBLEM: '}{check.detail}")
    drift = by_name.get("drift")
    lines.append(f"  drift: {drift.detail if drift else 'not checked'}")
    for action, record in (("deploy", host.last_deploy), ("backup", host.last_backup)):
        seen = (f"{record['result']} at {record['ts']} by {record['actor']}" if record else "none recorded")
        lines.append(f"  last {action}: {seen}")
    return "\n".join(lines) + "\n"
