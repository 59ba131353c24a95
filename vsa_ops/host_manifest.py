"""A host's manifest, assembled from what the project holds for it: its configuration (inventory and
group_data), the domains that name it, its secrets and the project's templates. Every command that
needs a manifest (render, lint, plan, deploy, the domain commands) gets it here, without pyinfra:
a host is anything with ``name``, ``groups`` and ``data`` (a pyinfra inventory host is one)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .domains import DOMAINS_FILE, DOMAINS_FILE_KEY, Domain, load_registry, served_by
from .inventory import host_config
from .manifest import Manifest
from .project import find_root, load_secrets, load_sources
from .render import render_host

# Host data naming the secrets file for this host (the lab's is .lab/secrets.env).
SECRETS_FILE_KEY = "vsa_secrets_file"


def registry_path(host, root: Path) -> Path:
    """The domain registry ``host`` reads: its ``vsa_domains_file`` data, else the project's domains.yml."""
    configured = host.data.get(DOMAINS_FILE_KEY)
    return Path(configured) if configured else root / DOMAINS_FILE


def host_secrets(host, root: Path) -> dict[str, str]:
    """The values of the secrets ``host``'s configuration declares."""
    named = host.data.get(SECRETS_FILE_KEY)
    return load_secrets(root, host_config(host).secrets.names(), file=Path(named) if named else None)


def host_manifest(host, certificates: set[str] | None, with_secrets: bool = True,
                  root: Path | None = None, registry: Mapping[str, Domain] | None = None) -> Manifest:
    """The manifest of ``host``. ``certificates`` names the certificates on the host (None: assume
    all), so domains without one get an HTTP-only vhost. Without secrets, their files hold
    placeholders (for checks that need no values). ``registry``: the host's domain registry when the
    caller holds it already (a domain change, under the registry's lock), else it is read."""
    root = root or find_root()
    if registry is None:
        registry = load_registry(registry_path(host, root))
    # in name order, as the saved registry reads back: a change's copy has its new domain last
    domains = sorted((d for d in registry.values() if served_by(d, host.name, host.groups)), key=lambda d: d.name)
    return render_host(host_config(host), load_sources(root), host=host.name,
                       secrets=host_secrets(host, root) if with_secrets else None,
                       domains=domains, certificates=certificates)
