"""``vsa-ops preflight``: is each host ready for its first deploy? The controller's side (the host key
pinned, where the TLS names point) is looked up before anything connects; then one read-only command
per host (host_read.sh) gives the facts every other check works from. Nothing on a host changes."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ..domains import load_registry, served_by
from ..host_manifest import registry_path
from ..inventory import InventoryError, host_config, limited
from ..pyinfra_glue.connections import connected
from ..pyinfra_glue.inventory_files import load_inventory
from . import checks, controller_checks
from .checks import Check
from .host_facts import parse, read_command

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass
class HostReport:
    host: str
    checks: list[Check]

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)


def resolve(name: str) -> list[str] | str:
    """The addresses ``name`` resolves to from the controller (A and AAAA), or why it does not."""
    try:
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return error.strerror or str(error)
    return sorted({info[4][0].split("%")[0] for info in found})


def _addresses(value, key: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise InventoryError(f"{key}: must be an address or a list of addresses (got {value!r})")
    return values


def pinned(known_hosts: str, target: str) -> bool:
    """Whether ``known_hosts`` holds a key for ``target`` (hashed entries included)."""
    from paramiko.hostkeys import HostKeys

    path = os.path.expanduser(known_hosts)
    return os.path.isfile(path) and HostKeys(path).lookup(target) is not None


def controller_side(host, root: Path) -> tuple[dict, list[Check], bool]:
    """The host-key check's arguments (known_hosts as it is before any connection), the DNS checks,
    and whether the host serves any domain with TLS."""
    data = host.data
    hostname, port = data.get("ssh_hostname") or host.name, int(data.get("ssh_port") or 22)
    target = hostname if port == 22 else f"[{hostname}]:{port}"
    known_hosts = data.get("ssh_known_hosts_file") or DEFAULT_KNOWN_HOSTS
    key = {"pinned": pinned(known_hosts, target), "strict": data.get("ssh_strict_host_key_checking"),
           "known_hosts": known_hosts, "target": target, "port": port}
    domains = [d for d in load_registry(registry_path(host, root)).values()
               if d.tls and served_by(d, host.name, host.groups)]
    names = [n for d in domains for n in d.server_names]
    overrides = data.get(controller_checks.DNS_OVERRIDES_KEY) or {}
    if not isinstance(overrides, dict):
        raise InventoryError(f"{controller_checks.DNS_OVERRIDES_KEY}: must map names to addresses (got {overrides!r})")
    resolved = {n: _addresses(overrides[n], f"{controller_checks.DNS_OVERRIDES_KEY}.{n}") if n in overrides
                else resolve(n) for n in names}
    configured = data.get(controller_checks.PUBLIC_ADDRESS_KEY)
    public = (_addresses(configured, controller_checks.PUBLIC_ADDRESS_KEY) if configured else resolve(hostname))
    if isinstance(public, str):
        public = f"ssh_hostname {hostname} does not resolve ({public})"
    return key, controller_checks.dns(names, resolved, public, set(overrides) & set(names)), bool(names)


def host_side(host, output: str, before: float, after: float, tls_domains: bool) -> list[Check]:
    facts, hub = parse(output), host_config(host)
    found = [checks.operating_system(facts), checks.privileges(facts, bool(host.data.get("_sudo"))),
             *checks.fstab_sources(facts, hub), checks.root_device(facts, hub), *checks.disk_space(facts, hub),
             *checks.ports(facts, hub), checks.docker(facts), checks.clock(facts, before, after),
             checks.acme(facts, hub, tls_domains)]
    return [c for c in found if c is not None]


def preflight(root: Path, inventory_file: Path, limit: str | None = None) -> list[HostReport]:
    """Every check for each host (``limit``: a host or group), hosts in inventory order."""
    hosts = limited(load_inventory(inventory_file, root), [limit] if limit else None)
    if not hosts:
        raise InventoryError(f"--limit: no host or group {limit!r} in the inventory")
    # Before any connection: pyinfra's default policy (accept-new) records a key it has never seen.
    sides = {h.name: controller_side(h, root) for h in hosts}
    reports = []
    with connected(inventory_file, root, names=[h.name for h in hosts]) as sessions:
        for host in hosts:
            key, dns, tls_domains = sides[host.name]
            session = sessions[host.name]
            if isinstance(session, str):
                found = [Check("connect", "fail", session, "`ssh` to the host as the inventory says (ssh_hostname, "
                               "ssh_user, ssh_key) must work; fix that first.")]
            else:
                _, run = session
                command = read_command(host_config(host).reverse_proxy.certbot.acme_server,
                                       host_config(host).reverse_proxy.certbot.acme_ca_bundle)
                before = time.time()
                ok, output = run(command)
                after = time.time()
                found = host_side(host, output, before, after, tls_domains) if ok else [
                    Check("read", "fail", "the read-only command failed on the host", "Run preflight with the "
                          "host reachable as root (or with sudo without a password).")]
            key_check = controller_checks.host_key(**key, connected=not isinstance(session, str))
            reports.append(HostReport(host.name, [key_check, *found, *dns]))
    return reports
