"""The ``vsa-ops`` command: a thin layer that parses options, calls the library and prints.

Start-up is a large part of a command's time, so each command imports the library modules it uses
inside its own body, and the command groups of other modules are registered lazily: ``vsa-ops lint``
never loads pyinfra's connectors, ``vsa-ops deploy`` never loads the domain, backup or status code."""

from __future__ import annotations

import gc

# A command lives a second or two and makes most of its objects up front (modules, models, the
# manifests), nearly all of which live to its end: at the collector's default thresholds it ran
# about 140 times per command (50 ms) and found almost nothing to free. It runs less often here;
# reference cycles are still collected.
gc.set_threshold(10_000, 20, 20)

from .pyinfra_glue.deferred_imports import defer  # noqa: E402
from .pyinfra_glue.gevent_patch import patch  # noqa: E402

# pyinfra runs inside this process (deploy, add-domain, plan): its connections are gevent greenlets,
# and like its own CLI it needs the standard library patched before anything opens a socket.
patch()
defer()  # what pyinfra's dependencies import but hardly use, on first use

import sys
from pathlib import Path

import click

from .cli_support import Command, LazyGroup, inventory_option, limit_option
from .project import find_root

format_option = click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
                             show_default=True)


@click.group(cls=Command)
def main():
    """vsa-ops: the VSA hub as code."""


def _hosts(inventory: str | None, limit: str | None) -> list:
    """The hosts a command acts on: every host of the inventory, or those ``--limit`` names."""
    from .inventory import InventoryError, inventory_path, limited
    from .pyinfra_glue.inventory_files import load_inventory

    hosts = limited(load_inventory(inventory_path(inventory), find_root()), [limit] if limit else None)
    if not hosts:
        raise InventoryError(f"--limit: no host or group {limit!r} in the inventory")
    return hosts


@main.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the files under, at their paths on the host.")
@inventory_option
@limit_option
def render(out: Path, inventory: str | None, limit: str | None):
    """Write every file of a host's manifest under OUT for review."""
    from .host_manifest import host_manifest
    from .inventory import InventoryError
    from .writer import write_manifest

    hosts = _hosts(inventory, limit)
    if len(hosts) > 1:
        raise InventoryError(f"--limit: {len(hosts)} hosts selected; name one of {', '.join(h.name for h in hosts)}")
    host = hosts[0]
    manifest = host_manifest(host, None)
    written = write_manifest(manifest, out)
    click.echo(f"rendered {host.name}: {written} files, {len(manifest.directories)} directories, "
               f"{len(manifest.stacks)} stacks, {len(manifest.fstab)} fstab entries under {out}")


@main.command()
@inventory_option
@limit_option
def lint(inventory: str | None, limit: str | None):
    """Check each host's manifest against the design's rules; exit 1 on any error."""
    from .host_manifest import host_manifest
    from .inventory import host_config
    from .lint import lint as lint_manifest

    errors = 0
    for host in _hosts(inventory, limit):
        findings = lint_manifest(host_manifest(host, None, with_secrets=False), host_config(host))
        for finding in findings:
            click.echo(f"{host.name}: {finding}")
        host_errors = sum(f.severity == "error" for f in findings)
        errors += host_errors
        if not host_errors:
            click.echo(f"{host.name}: ok ({len(findings)} warnings)")
    sys.exit(1 if errors else 0)


@main.command()
@inventory_option
@limit_option
@click.option("--force-fstab", is_flag=True, help="Let an fstab entry replace the device of a mounted mount point.")
@click.option("--lock-wait", default=60, show_default=True, type=click.IntRange(0, 3600), metavar="SECONDS",
              help="How long to wait for another run's lock.")
@click.option("--defer-certificates", is_flag=True,
              help="Order no certificate: TLS sites without one serve HTTP (ACME webroot) until `vsa-ops restore` "
                   "brings theirs back or a plain deploy orders them.")
def deploy(inventory: str | None, limit: str | None, force_fstab: bool, lock_wait: int, defer_certificates: bool):
    """Converge every host (or --limit HOST) with `pyinfra -y INVENTORY deploy.py`."""
    from .audit import Entry
    from .backup.spool import ingest as ingest_spool
    from .deploys.request import DeployRequest
    from .fact_publishing import publish_deploy
    from .host_manifest import host_manifest
    from .inventory import InventoryError, inventory_path, limited
    from .pyinfra_glue.inventory_files import load_inventory
    from .pyinfra_glue.runner import deploying
    from .recording import record_audit

    root = find_root()
    path = inventory_path(inventory).resolve()
    inventory_hosts = load_inventory(path, root)
    hosts = limited(inventory_hosts, [limit] if limit else None)
    if not hosts:
        raise InventoryError(f"--limit: no host or group {limit!r} in the inventory")
    # Configuration, secrets and templates are checked for every host before any operation is
    # prepared (rendered while the hosts connect); the deploy starts from these manifests.
    def manifests():
        return {host.name: host_manifest(host, None, root=root) for host in hosts}

    request = DeployRequest(force_fstab=force_fstab, lock_wait=lock_wait, defer_certificates=defer_certificates)
    # pyinfra's progress lines are diagnostics (stderr); the result is a line per host (stdout).
    with deploying(root, path, [limit] if limit else [], request, manifests,
                   echo=lambda line: click.echo(line, err=True), inventory=inventory_hosts) as run:
        result = run.result
        entries = []
        for host in hosts:
            failed = host.name in result.failed_hosts
            summary = result.summaries.get(host.name, "")
            click.echo(f"{host.name}: " + (f"failed at {result.failed_step}" if failed else summary or "no changes"))
            if failed or (summary and summary != "no changes"):
                entries.append(Entry(host.name, "deploy", "hub", "failed" if failed else "ok", result.duration,
                                     summary, f"failed at {result.failed_step}" if failed else None))
        if entries:
            record_audit(root, None, entries, echo=lambda line: click.echo(line, err=True), run=run)
        ingest_spool(path, root, limit, lambda line: click.echo(line, err=True), sessions=run.sessions(),
                     inventory=inventory_hosts)
        if defer_certificates:
            click.echo("certificates deferred: none was ordered from the CA; `vsa-ops restore --limit HOST` brings "
                       "a snapshot's back, a deploy without --defer-certificates orders the rest", err=True)
        publish_deploy(run, echo=lambda line: click.echo(line, err=True))
    sys.exit(result.returncode)


# The lab (images, lab hosts, test CA) is a development tool: the product's commands never load it.
main.add_command(LazyGroup("lab", "vsa_ops.lab.cli:lab", "Local lab VPS hosts for development and tests."))


def _review(root: Path, path: Path, limit: str | None, fmt: str) -> list:
    from . import plan_report, plan_review
    from .inventory import InventoryError

    plans = plan_review.plan_hosts(root, path, limit)
    if not plans:
        raise InventoryError(f"--limit: no host {limit!r} in the inventory")
    renderers = {"text": plan_report.render_text, "markdown": plan_report.render_markdown,
                 "json": plan_report.render_json}
    click.echo(renderers[fmt](plans), nl=False)
    return plans


def _review_exit(plans: list) -> None:
    """Terraform's -detailed-exitcode: 0 nothing to change, 2 changes pending, 1 error."""
    if any(hp.error for hp in plans):
        sys.exit(1)
    sys.exit(2 if any(not hp.plan.empty for hp in plans) else 0)


@main.command()
@inventory_option
@limit_option
@format_option
def plan(inventory, limit, fmt):
    """Every change a deploy would make, per host. Exit 0: none; 2: changes pending; 1: error."""
    from .inventory import inventory_path

    _review_exit(_review(find_root(), inventory_path(inventory).resolve(), limit, fmt))


@main.command()
@inventory_option
@limit_option
@format_option
def drift(inventory, limit, fmt):
    """Compare hosts with the code: hand edits show as drift (the plan's diff), each host's finding
    goes to its audit trail; exit 2 when any host drifted. `vsa-ops deploy` repairs it."""
    from .audit import Entry
    from .fact_publishing import drift_counts, publish_drift
    from .inventory import inventory_path
    from .recording import record_audit

    root, path = find_root(), inventory_path(inventory).resolve()
    plans = _review(root, path, limit, fmt)
    # The plan identity's key runs nothing but the state reader: its hosts get no record and no metric.
    writable = [hp for hp in plans if not hp.read_only]
    for hp in plans:
        if hp.read_only:
            click.echo(f"vsa-ops: drift on {hp.host} as the plan identity: no audit record and no drift metric "
                       "written", err=True)
    if writable:
        entries = [Entry(hp.host, "drift-check", "hub", "failed" if hp.error else "ok", 0.0,
                         hp.changes or ["no drift"], hp.error) for hp in writable]
        record_audit(root, path, entries, echo=lambda line: click.echo(line, err=True))
        publish_drift(root, path, drift_counts(writable), echo=lambda line: click.echo(line, err=True))
    _review_exit(plans)


# Commands of other modules, imported only when used.
main.add_lazy("audit", "vsa_ops.audit.cli:audit")
main.add_lazy("preflight", "vsa_ops.preflight.cli:preflight")
for _name in ("backup", "backups", "restore"):
    main.add_lazy(_name, f"vsa_ops.backup.cli:{_name}")
main.add_lazy("status", "vsa_ops.status.cli:status")
for _name in ("add-domain", "remove-domain", "domains", "certs"):
    main.add_lazy(_name, f"vsa_ops.domains_cli:{_name.replace('-', '_')}")


def run() -> None:
    """The console script: the command, then a quick exit. Python's teardown of the modules a command
    loads (pyinfra, paramiko, pydantic, gevent) takes 0.1-0.15 s and serves nothing here, so after the
    exit handlers have run and the output is flushed, the process ends at once. A crash still ends
    with its traceback, the usual way."""
    import atexit
    import os

    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
