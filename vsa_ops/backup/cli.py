"""``vsa-ops backup``, ``vsa-ops backups`` and ``vsa-ops restore``. Registered in ``vsa_ops.cli``
from ``COMMANDS``."""

from __future__ import annotations

import json
import sys

import click

from ..cli_support import inventory_option, limit_option
from ..inventory import inventory_path
from ..project import find_root
from . import hosts, service, spool


def _err(line: str) -> None:
    click.echo(line, err=True)


@click.command()
@inventory_option
@limit_option
def backup(inventory, limit):
    """Back up each host now (its backup stack's program over SSH); an audit record per host."""
    root, path = find_root(), inventory_path(inventory).resolve()
    spool.ingest(path, root, limit, _err)  # the scheduled runs before this one
    failed = 0
    for name, run in service.backup(path, root, limit, _err).items():
        if run.ok:
            click.echo(f"{name}: snapshot {run.fields.get('snapshot', '?')[:8]}, {run.fields.get('size', '?')} bytes, "
                       f"{run.fields.get('added', '?')} bytes new, in {run.duration:.1f} s")
        else:
            failed += 1
            click.echo(f"vsa-ops: {name}: backup failed: {run.error}", err=True)
    sys.exit(1 if failed else 0)


@click.command()
@inventory_option
@limit_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: snapshots by host.")
def backups(inventory, limit, as_json):
    """The snapshots of each host: time, size, what they hold (oldest first)."""
    root, path = find_root(), inventory_path(inventory).resolve()
    spool.ingest(path, root, limit, _err)
    found = hosts.snapshots(path, root, limit)
    failed = [name for name, rows in found.items() if isinstance(rows, str)]
    for name in failed:
        click.echo(f"vsa-ops: {name}: {found[name]}", err=True)
    if as_json:
        click.echo(json.dumps({name: rows for name, rows in found.items() if not isinstance(rows, str)}, indent=2))
    else:
        for name, rows in found.items():
            if isinstance(rows, str):
                continue
            for snap in rows:
                size = (snap.get("summary") or {}).get("total_bytes_processed", "?")
                click.echo(f"{name} {snap.get('short_id', snap.get('id', '?')[:8])} {snap.get('time', '?')[:19]}Z "
                           f"{size} bytes: {' '.join(snap.get('paths', []))}")
            if not rows:
                click.echo(f"{name}: no snapshots")
    sys.exit(1 if failed else 0)


@click.command()
@inventory_option
@click.option("--limit", "limit", required=True, metavar="HOST", help="The one host to restore.")
@click.option("--snapshot", "snapshot", default=None, metavar="ID", help="A snapshot id (default: the latest).")
@click.option("--force", is_flag=True, help="Overwrite a host that already holds data.")
def restore(inventory, limit, snapshot, force):
    """Restore a snapshot onto a host just deployed with --defer-certificates: PostgreSQL,
    letsencrypt, Grafana, the audit trail; then converge its sites on the restored certificates
    (ordering only those the snapshot lacks), reload NGINX and probe every domain."""
    root, path = find_root(), inventory_path(inventory).resolve()
    for probe in service.restore(path, root, limit, snapshot, force, _err):
        click.echo(f"{probe.domain}: {probe.status}{f' ({probe.issuer})' if probe.issuer else ''}")


COMMANDS = (backup, backups, restore)
