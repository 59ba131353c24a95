"""``vsa-ops lab ...``: loaded only when that command runs (see ``vsa_ops.cli``)."""

from __future__ import annotations

import json

import click

from ..project import find_root
from . import lifecycle
from .names import lab_dir


def _log(line: str) -> None:
    click.echo(line, err=True)


@click.group()
def lab():
    """Local lab VPS hosts: containers with sshd and Docker, reached over SSH on 127.0.0.1."""


@lab.command("up")
@click.option("--hosts", "count", default=1, show_default=True, type=click.IntRange(1, 20))
@click.option("--backups", is_flag=True, help="Set each host's backup repository on vsa-lab-backup.")
def lab_up(count: int, backups: bool):
    """Build the lab images (cached) and start vsa-lab-1 .. vsa-lab-N, the ACME CA and vsa-lab-backup."""
    root = find_root()
    for host in lifecycle.up(root, count, log=_log, backups=backups):
        click.echo(f"{host.name}: ssh -i {host.ssh_key} -p {host.ssh_port} {host.ssh_user}@127.0.0.1 "
                   f"(http 127.0.0.1:{host.http_port}, https 127.0.0.1:{host.https_port})")
    click.echo(f"inventory: {lab_dir(root) / 'inventory.py'}")


@lab.command("down")
@click.option("--purge", is_flag=True, help="Remove vsa-lab-backup and its repositories too.")
def lab_down(purge: bool):
    """Remove every lab host, its volumes and the lab inventory (vsa-lab-backup stays unless --purge)."""
    removed = lifecycle.down(find_root(), log=_log, purge=purge)
    click.echo(f"removed {removed} lab hosts")


@lab.command("status")
def lab_status():
    """What runs in the lab."""
    rows = lifecycle.status()
    for name, state in rows:
        click.echo(f"{name}: {state}")
    if not rows:
        click.echo("no lab hosts")


@lab.command("info")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def lab_info(as_json: bool):
    """Ports, user and key of each lab host."""
    data = lifecycle.info(find_root())
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for host in data["hosts"]:
        click.echo(f"{host['name']}: ssh {host['ssh_port']}, http {host['http_port']}, https {host['https_port']}")
