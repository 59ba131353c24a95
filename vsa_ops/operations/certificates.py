"""TLS certificates from an ACME CA, through the certbot container and the ACME webroot NGINX serves."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from ..config.reverse_proxy import Certbot
from ..domains import Domain
from .shell import argv


def _exec(certbot: Certbot, *command: str) -> str:
    env = [part for key, value in certbot.environment.items() for part in ("-e", f"{key}={value}")]
    return argv("docker", "exec", *env, certbot.container.container_name, *command)


@operation()
def issue(domains: list[Domain], certbot: Certbot):
    """Obtain a certificate for each domain (its name and aliases) with HTTP-01 over the webroot.

    certbot writes ``letsencrypt/renewal/DOMAIN.conf``, so its renewal loop keeps it fresh; an
    existing lineage with the same names is kept (no new order, no rate limit spent).

    + domains: domains whose certificate the host lacks (``plan.certificates``)
    + certbot: the certbot settings (ACME server, CA bundle, e-mail)
    """
    if not domains:
        host.noop("every certificate exists")
        return
    for domain in domains:
        command = _exec(certbot, *certbot.issue_command(domain.server_names))
        yield StringCommand(f"{command} || {{ echo {argv(f'vsa-ops: certbot could not get a certificate for {domain.name}')} >&2; exit 1; }}")


@operation()
def delete(names: list[str], certbot: Certbot):
    """Delete certificates and their renewal configuration (``certbot delete``).

    + names: certificate names (the domain names)
    + certbot: the certbot settings
    """
    if not names:
        host.noop("no certificate to delete")
        return
    for name in names:
        yield StringCommand(f"{_exec(certbot, 'certbot', 'delete', '--non-interactive', '--cert-name', name)} "
                            f">/dev/null 2>&1 || true")
