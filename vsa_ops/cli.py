"""The ``vsa-ops`` command: a thin layer that parses options, calls the library and prints."""

from __future__ import annotations

from .pyinfra_glue.gevent_patch import patch

# pyinfra runs inside this process (deploy, add-domain, plan): its connections are gevent greenlets,
# and like its own CLI it needs the standard library patched before anything opens a socket.
patch()

import json
import sys
from pathlib import Path

import click

from . import domain_changes, listings, plan_report, plan_review
from .audit import Entry
from .audit.cli import audit as audit_commands
from .backup.spool import ingest as ingest_spool
from .cli_support import Command, LazyGroup, inventory_option, limit_option
from .deploys.request import DeployRequest
from .fact_publishing import drift_counts, publish_deploy, publish_drift
from .host_manifest import host_manifest
from .inventory import InventoryError, host_config, inventory_path, limited
from .lint import lint as lint_manifest
from .plan_identity import refuse_plan_identity
from .project import find_root
from .pyinfra_glue.inventory_files import load_inventory
from .pyinfra_glue.runner import deploying
from .recording import record_audit
from .status.cli import status as status_command
from .writer import write_manifest

format_option = click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
                             show_default=True)
RENDERERS = {"text": plan_report.render_text, "markdown": plan_report.render_markdown,
             "json": plan_report.render_json}


@click.group(cls=Command)
def main():
    """vsa-ops: the VSA hub as code."""


def _hosts(inventory: str | None, limit: str | None) -> list:
    """The hosts a command acts on: every host of the inventory, or those ``--limit`` names."""
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
    root = find_root()
    path = inventory_path(inventory).resolve()
    inventory_hosts = load_inventory(path, root)
    hosts = limited(inventory_hosts, [limit] if limit else None)
    if not hosts:
        raise InventoryError(f"--limit: no host or group {limit!r} in the inventory")
    refuse_plan_identity(hosts, "deploy")
    # Configuration, secrets and templates are checked for every host before any host is touched;
    # the deploy starts from these manifests.
    manifests = {host.name: host_manifest(host, None, root=root) for host in hosts}
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


def _read_password(user: str) -> str:
    """From standard input when it is not a terminal (one line), else a hidden prompt; never argv."""
    if sys.stdin.isatty():
        return click.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True, default="",
                            show_default=False)
    return sys.stdin.readline().rstrip("\n")


@main.command("add-domain")
@click.argument("domain")
@click.option("--upstream", required=True, help="container:port on flowbiz_ext, or an http(s) URL.")
@click.option("--alias", "aliases", multiple=True, help="Another name served by the same vhost (repeatable).")
@click.option("--auth-user", default=None, help="Protect the site with basic auth; password from stdin or prompt.")
@click.option("--no-tls", is_flag=True, help="Serve over HTTP only, with no certificate.")
@click.option("--host", "hosts", multiple=True, help="Host or group that serves it (default: every host).")
@click.option("--pass-auth", is_flag=True, help="Forward the basic-auth credentials to the upstream (default: not).")
@click.option("--insecure-auth", is_flag=True, help="Allow --auth-user with --no-tls (passwords in clear text).")
@click.option("--rate-limit", metavar="RATE[/BURST]|off|ZONE", default=None,
              help="Requests per client address: the site's own rate and burst (50r/s/100, 600r/m), off, or a "
                   "zone of vsa.reverse_proxy.nginx.rate_limit_zones (default: perip).")
@click.option("--require-upstream", is_flag=True,
              help="Roll the site back (exit 1) when its upstream does not answer; default: keep it and warn.")
@inventory_option
@click.option("--no-apply", is_flag=True, help="Only validate and write the registry.")
def add_domain(domain, upstream, aliases, auth_user, no_tls, hosts, pass_auth, insecure_auth, rate_limit,
               require_upstream, inventory, no_apply):
    """Add a site: registry, vhost, basic auth, certificate, HTTPS probe; all or nothing.

    A site whose upstream does not answer yet (NGINX's own 502/504) or answers an error is kept, with
    "upstream not answering: 502" on stderr and exit 0: the proxy often comes before the app.
    --require-upstream rolls it back and exits 1 instead. A vhost NGINX does not serve right is
    always rolled back."""
    root = find_root()
    path = inventory_path(inventory).resolve()
    domain_changes.check_auth_options(not no_tls, auth_user, pass_auth, insecure_auth)
    password = _read_password(auth_user) if auth_user is not None else None
    site = domain_changes.new_domain(domain, upstream, list(aliases), not no_tls, list(hosts), auth_user, password,
                                     pass_auth=pass_auth, insecure_auth=insecure_auth, rate_limit=rate_limit)
    probes = domain_changes.add_domain(root, path, site, password=password, apply=not no_apply,
                                       require_upstream=require_upstream, echo=lambda line: click.echo(line, err=True))
    if no_apply:
        click.echo(f"{site.name}: declared (not applied)")
    for probe in probes:
        expiry = f", certificate by {probe.issuer} until {probe.not_after:%Y-%m-%d}" if probe.not_after else ""
        state = "serving" if probe.ok else f"added, {probe.upstream}"
        click.echo(f"{site.name}: {state}{f', status {probe.status}' if probe.status else ''}{expiry}")


@main.command("remove-domain")
@click.argument("domain")
@click.option("--keep-cert", is_flag=True, help="Keep the certificate and its renewal configuration.")
@inventory_option
@click.option("--no-apply", is_flag=True, help="Only update the registry.")
def remove_domain(domain, keep_cert, inventory, no_apply):
    """Remove a site: vhost, htpasswd, certificate (unless kept) and registry entry. Logs stay."""
    root = find_root()
    domain_changes.remove_domain(root, inventory_path(inventory).resolve(), domain, keep_cert=keep_cert, apply=not no_apply,
                        echo=lambda line: click.echo(line, err=True))
    click.echo(f"{domain}: removed" + (" (not applied)" if no_apply else ""))


@main.command()
@inventory_option
@click.option("--json", "as_json", is_flag=True)
def domains(inventory, as_json):
    """Each declared domain with its live state on the hosts serving it."""
    rows, unread = listings.domain_status(find_root(), inventory_path(inventory).resolve())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for r in [] if as_json else rows:
        cert = f"{r['issuer']} until {r['expires']} ({r['days_left']} days)" if r["issuer"] else "no certificate"
        click.echo(f"{r['domain']} on {r['host']}: vhost {'yes' if r['vhost'] else 'no'}, {cert}, "
                   f"auth {'on' if r['auth'] else 'off'}, upstream {r['upstream']}")
    _unread(unread)


@main.command()
@inventory_option
@click.option("--json", "as_json", is_flag=True)
def certs(inventory, as_json):
    """Certificates on every host, the soonest to expire first."""
    rows, unread = listings.certificate_inventory(find_root(), inventory_path(inventory).resolve())
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    for r in [] if as_json else rows:
        click.echo(f"{r['host']} {r['name']}: {r['days_left']} days left (until {r['expires']}), {r['issuer']}")
    _unread(unread)


def _unread(hosts: dict[str, str]) -> None:
    """A listing that misses hosts says which and why, and exits 1."""
    for name, why in hosts.items():
        click.echo(f"vsa-ops: {name}: {why}", err=True)
    if hosts:
        sys.exit(1)


def _review(root: Path, path: Path, limit: str | None, fmt: str) -> list:
    plans = plan_review.plan_hosts(root, path, limit)
    if not plans:
        raise InventoryError(f"--limit: no host {limit!r} in the inventory")
    click.echo(RENDERERS[fmt](plans), nl=False)
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
    _review_exit(_review(find_root(), inventory_path(inventory).resolve(), limit, fmt))


@main.command()
@inventory_option
@limit_option
@format_option
def drift(inventory, limit, fmt):
    """Compare hosts with the code: hand edits show as drift (the plan's diff), each host's finding
    goes to its audit trail; exit 2 when any host drifted. `vsa-ops deploy` repairs it."""
    root, path = find_root(), inventory_path(inventory).resolve()
    plans = _review(root, path, limit, fmt)
    entries = [Entry(hp.host, "drift-check", "hub", "failed" if hp.error else "ok", 0.0,
                     hp.changes or ["no drift"], hp.error) for hp in plans]
    if any(hp.read_only for hp in plans):  # its key runs nothing but the state reader
        click.echo("vsa-ops: drift as the plan identity: no audit record and no drift metric written", err=True)
    else:
        record_audit(root, path, entries, echo=lambda line: click.echo(line, err=True))
        publish_drift(root, path, drift_counts(plans), echo=lambda line: click.echo(line, err=True))
    _review_exit(plans)


main.add_command(audit_commands)
from .preflight.cli import preflight as preflight_command  # noqa: E402 (beside its registration: merges stay trivial)
main.add_command(preflight_command)
from .backup.cli import COMMANDS as backup_commands  # noqa: E402
for _command in backup_commands:
    main.add_command(_command)
main.add_command(status_command)


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
