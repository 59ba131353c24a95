"""The ``vsa-ops`` command: a thin layer that parses options, calls the library and prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .config import ConfigError
from .inventory import InventoryError, host_config, inventory_path, load_inventory, select_hosts
from .lint import lint as lint_manifest
from .project import find_root, load_secrets, load_sources
from .render import RenderError, render_host
from .deploys.hub import host_manifest
from .lab import hosts as lab_hosts
from .runner import run_deploy
from .writer import write_manifest

USER_ERRORS = (ConfigError, InventoryError, RenderError, FileNotFoundError, ValueError, lab_hosts.LabError)


class Command(click.Group):
    """Known mistakes end as short messages on stderr and exit 1, never as tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            for line in str(error).splitlines():
                click.echo(f"vsa-ops: {line}", err=True)
            sys.exit(1)


inventory_option = click.option("-i", "--inventory", "inventory", default=None, metavar="INVENTORY",
                                 help="pyinfra inventory file (default: $VSA_INVENTORY or inventory.py).")
host_option = click.option("--host", "host_name", default=None, metavar="NAME", help="Only this host.")


@click.group(cls=Command)
def main():
    """vsa-ops: the VSA hub as code."""


def _hosts(inventory: str | None, host_name: str | None):
    root = find_root()
    hosts = select_hosts(load_inventory(inventory_path(inventory), root), host_name)
    return root, load_sources(root), hosts


@main.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the files under, at their paths on the host.")
@inventory_option
@host_option
def render(out: Path, inventory: str | None, host_name: str | None):
    """Write every file of a host's manifest under OUT for review."""
    root, sources, hosts = _hosts(inventory, host_name)
    if len(hosts) > 1:
        raise InventoryError(f"--host: the inventory has {len(hosts)} hosts; name one of "
                             f"{', '.join(h.name for h in hosts)}")
    host = hosts[0]
    manifest = render_host(host_config(host), sources, host=host.name, secrets=load_secrets(root))
    written = write_manifest(manifest, out)
    click.echo(f"rendered {host.name}: {written} files, {len(manifest.directories)} directories, "
               f"{len(manifest.stacks)} stacks, {len(manifest.fstab)} fstab entries under {out}")


@main.command()
@inventory_option
@host_option
def lint(inventory: str | None, host_name: str | None):
    """Check each host's manifest against the design's rules; exit 1 on any error."""
    _root, sources, hosts = _hosts(inventory, host_name)
    errors = 0
    for host in hosts:
        hub = host_config(host)
        findings = lint_manifest(render_host(hub, sources, host=host.name, secrets=None), hub)
        for finding in findings:
            click.echo(f"{host.name}: {finding}")
        host_errors = sum(f.severity == "error" for f in findings)
        errors += host_errors
        if not host_errors:
            click.echo(f"{host.name}: ok ({len(findings)} warnings)")
    sys.exit(1 if errors else 0)


@main.command()
@inventory_option
@click.option("--limit", "limit", default=None, metavar="HOST", help="Only this host (or group).")
def deploy(inventory: str | None, limit: str | None):
    """Converge every host (or --limit HOST) with `pyinfra -y INVENTORY deploy.py`."""
    root = find_root()
    path = inventory_path(inventory).resolve()
    # Configuration, secrets and templates are checked for every host before any host is touched.
    for host in load_inventory(path, root):
        if limit in (None, host.name) or limit in host.groups:
            host_manifest(host, None)
    sys.exit(run_deploy(root, path, limit))


@main.group(cls=Command)
def lab():
    """Local lab VPS hosts: containers with sshd and Docker, reached over SSH on 127.0.0.1."""


@lab.command("up")
@click.option("--hosts", "count", default=1, show_default=True, type=click.IntRange(1, 20))
def lab_up(count: int):
    """Build the lab images (cached) and start vsa-lab-1 .. vsa-lab-N."""
    root = find_root()
    for host in lab_hosts.up(root, count, log=lambda line: click.echo(line, err=True)):
        click.echo(f"{host.name}: ssh -i {host.ssh_key} -p {host.ssh_port} {host.ssh_user}@127.0.0.1 "
                   f"(http 127.0.0.1:{host.http_port}, https 127.0.0.1:{host.https_port})")
    click.echo(f"inventory: {lab_hosts.lab_dir(root) / 'inventory.py'}")


@lab.command("down")
def lab_down():
    """Remove every lab host, its volumes and the lab inventory."""
    removed = lab_hosts.down(find_root(), log=lambda line: click.echo(line, err=True))
    click.echo(f"removed {removed} lab hosts")


@lab.command("status")
def lab_status():
    """What runs in the lab."""
    rows = lab_hosts.status(find_root())
    for name, state in rows:
        click.echo(f"{name}: {state}")
    if not rows:
        click.echo("no lab hosts")


@lab.command("info")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
def lab_info(as_json: bool):
    """Ports, user and key of each lab host."""
    data = lab_hosts.info(find_root())
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for host in data["hosts"]:
        click.echo(f"{host['name']}: ssh {host['ssh_port']}, http {host['http_port']}, https {host['https_port']}")
