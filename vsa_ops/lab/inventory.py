"""``.lab/inventory.py``: the lab hosts as a pyinfra inventory, with the settings the lab needs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..config import deep_merge
from .hosts import LabHost

# What a container cannot do that a VPS can: no privileged containers inside, / is not a shared mount,
# /proc/sys is read-only (the engine cannot route published ports to loopback without its proxy).
LAB_OVERRIDES = {
    "docker": {"userland_proxy": True, "pull": "never"},
    # Renewed certificates reach NGINX within seconds, so tests need not wait a minute.
    "reverse_proxy": {"reloader": {"check_every": "5s"}},
    "observability": {
        "cadvisor": {"container": {"privileged": False}},
        "node_exporter": {"container": {"mounts": [{"source": "/", "target": "/host", "read_only": True,
                                                    "live": True}]}},
    },
}
# The lab hosts' own keys, recorded by `lab up` (lifecycle.up): a key that differs is refused.
KNOWN_HOSTS = "known_hosts"
SECRET_NAMES = ("VSA_POSTGRES_PASSWORD", "VSA_GRAFANA_ADMIN_PASSWORD")


def write_inventory(folder: Path, lab_hosts: list[LabHost], acme_directory: str, acme_listener_ca: str,
                    acme_roots: Path) -> Path:
    """``folder/inventory.py``: the lab hosts in the groups ``lab`` and ``hubs``.

    Their data points certbot at the lab's ACME CA and trusts its HTTPS, keeps the lab's domain
    registry and secrets in .lab/, and tells probes where each host's ports 80 and 443 are
    published and which root signs the certificates they serve.
    """
    overrides = deep_merge(LAB_OVERRIDES, {"reverse_proxy": {"certbot": {
        "acme_server": acme_directory, "acme_ca_bundle": acme_listener_ca}}})
    entries = []
    for h in lab_hosts:
        data = {"ssh_hostname": "127.0.0.1", "ssh_port": h.ssh_port, "ssh_user": h.ssh_user, "ssh_key": h.ssh_key,
                "ssh_strict_host_key_checking": "yes", "ssh_known_hosts_file": str(folder / KNOWN_HOSTS),
                "vsa_http_port": h.http_port, "vsa_https_port": h.https_port, "vsa_probe_address": "127.0.0.1",
                "vsa_probe_ca_file": str(acme_roots), "vsa_secrets_file": str(_secrets(folder)),
                "vsa_domains_file": str(folder / "domains.yml"), "vsa": overrides}
        entries.append(f"    ({h.name!r}, {data!r}),")
    text = ("\"\"\"Lab hosts, written by `vsa-ops lab up`. Not committed; rewritten on every `lab up`.\"\"\"\n\n"
            "lab = [\n" + "\n".join(entries) + "\n]\n\nhubs = [name for name, _ in lab]\n")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inventory.py"
    path.write_text(text)
    return path


def _secrets(folder: Path) -> Path:
    """Random passwords for the lab's secrets, made once, private to root."""
    path = folder / "secrets.env"
    if not path.exists():
        text = "".join(f"{name}={secrets.token_urlsafe(18)}\n" for name in SECRET_NAMES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    return path
