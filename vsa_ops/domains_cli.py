"""The site commands of ``vsa-ops``: add-domain, remove-domain, and the domain and certificate
listings. Loaded only when one of them runs (vsa_ops/cli.py registers them lazily)."""

from __future__ import annotations

import json
import sys

import click

from .cli_support import inventory_option
from .project import find_root


def _read_password(user: str) -> str:
    """From standard input when it is not a terminal (one line), else a hidden prompt; never argv."""
    if sys.stdin.isatty():
        return click.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True, default="",
                            show_default=False)
    return sys.stdin.readline().rstrip("\n")


@click.command("add-domain")
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
    from . import domain_changes
    from .inventory import inventory_path

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


@click.command("remove-domain")
@click.argument("domain")
@click.option("--keep-cert", is_flag=True, help="Keep the certificate and its renewal configuration.")
@inventory_option
@click.option("--no-apply", is_flag=True, help="Only update the registry.")
def remove_domain(domain, keep_cert, inventory, no_apply):
    """Remove a site: vhost, htpasswd, certificate (unless kept) and registry entry. Logs stay."""
    from . import domain_changes
    from .inventory import inventory_path

    root = find_root()
    domain_changes.remove_domain(root, inventory_path(inventory).resolve(), domain, keep_cert=keep_cert, apply=not no_apply,
                        echo=lambda line: click.echo(line, err=True))
    click.echo(f"{domain}: removed" + (" (not applied)" if no_apply else ""))


@click.command()
@inventory_option
@click.option("--json", "as_json", is_flag=True)
def domains(inventory, as_json):
    """Each declared domain with its live state on the hosts serving it."""
    from .listings import domain_status

    def line(r: dict) -> str:
        cert = f"{r['issuer']} until {r['expires']} ({r['days_left']} days)" if r["issuer"] else "no certificate"
        return (f"{r['domain']} on {r['host']}: vhost {'yes' if r['vhost'] else 'no'}, {cert}, "
                f"auth {'on' if r['auth'] else 'off'}, upstream {r['upstream']}")

    _listing(domain_status, line, inventory, as_json)


@click.command()
@inventory_option
@click.option("--json", "as_json", is_flag=True)
def certs(inventory, as_json):
    """Certificates on every host, the soonest to expire first."""
    from .listings import certificate_inventory

    _listing(certificate_inventory, lambda r: f"{r['host']} {r['name']}: {r['days_left']} days left "
                                              f"(until {r['expires']}), {r['issuer']}", inventory, as_json)


def _listing(read, line, inventory: str | None, as_json: bool) -> None:
    """Rows from every host as JSON or one line each; a listing that misses hosts says which and why
    on stderr, and exits 1."""
    from .inventory import inventory_path

    rows, unread = read(find_root(), inventory_path(inventory).resolve())
    click.echo(json.dumps(rows, indent=2) if as_json else "\n".join(line(r) for r in rows), nl=as_json or bool(rows))
    for name, why in unread.items():
        click.echo(f"vsa-ops: {name}: {why}", err=True)
    if unread:
        sys.exit(1)
