"""``.lab/inventory.py``: the lab hosts as a pyinfra inventory, with the settings the lab needs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..config import deep_merge
from ..config.plan_access import PlanIdentity
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
PLAN_INVENTORY = "plan-inventory.py"
SECRET_NAMES = ("VSA_POSTGRES_PASSWORD", "VSA_GRAFANA_ADMIN_PASSWORD", "VSA_BACKUP_PASSWORD")


def write_inventory(folder: Path, lab_hosts: list[LabHost], acme_directory: str, acme_listener_ca: str,
                    acme_roots: Path, backups=None, extra_secrets: dict[str, str] | None = None,
                    plan_key: Path | None = None) -> Path:
    """``folder/inventory.py``: the lab hosts in the groups ``lab`` and ``hubs``.

    Their data points certbot at the lab's ACME CA and trusts its HTTPS, keeps the lab's domain
    registry and secrets in .lab/, and tells probes where each host's ports 80 and 443 are
    published and which root signs the certificates they serve. ``backups``: a function giving each
    host's backup repository (None: backups off); ``extra_secrets``: values kept in secrets.env too.
    ``plan_key``: the plan identity's key, let in by a deploy; then ``folder/plan-inventory.py`` holds the
    same hosts logging in with it, and no secrets (a plan needs none).
    """
    overrides = deep_merge(LAB_OVERRIDES, {"reverse_proxy": {"certbot": {
        "acme_server": acme_directory, "acme_ca_bundle": acme_listener_ca}}})
    if plan_key:
        public = plan_key.with_name(f"{plan_key.name}.pub").read_text().strip()
        overrides = deep_merge(overrides, {"plan_identity": {"authorized_keys": [public]}})
    entries, plan_entries = [], []
    for h in lab_hosts:
        data = {"ssh_hostname": "127.0.0.1", "ssh_port": h.ssh_port, "ssh_user": h.ssh_user, "ssh_key": h.ssh_key,
                "ssh_strict_host_key_checking": "yes", "ssh_known_hosts_file": str(folder / KNOWN_HOSTS),
                "vsa_http_port": h.http_port, "vsa_https_port": h.https_port, "vsa_probe_address": "127.0.0.1",
                "vsa_probe_ca_file": str(acme_roots), "vsa_secrets_file": str(_secrets(folder, extra_secrets or {})),
                "vsa_domains_file": str(folder / "domains.yml"),
                "vsa": deep_merge(overrides, {"backup": {"repository": backups(h.name)}}) if backups else overrides}
        entries.append(f"    ({h.name!r}, {data!r}),")
        plan_data = {key: value for key, value in data.items() if key != "vsa_secrets_file"}
        if plan_key:
            plan_data |= {"ssh_user": PlanIdentity().user, "ssh_key": str(plan_key)}
            plan_entries.append(f"    ({h.name!r}, {plan_data!r}),")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PLAN_INVENTORY).unlink(missing_ok=True)
    if plan_entries:
        _write(folder / PLAN_INVENTORY, plan_entries, "the plan identity: vsa-ops plan and drift only, no secrets")
    return _write(folder / "inventory.py", entries, "root")


def _write(path: Path, entries: list[str], who: str) -> Path:
    path.write_text(f"\"\"\"Lab hosts ({who}), written by `vsa-ops lab up`. Not committed; rewritten on every "
                    f"`lab up`.\"\"\"\n\nlab = [\n" + "\n".join(entries) + "\n]\n\nhubs = [name for name, _ in lab]\n")
    return path


def _secrets(folder: Path, extra: dict[str, str]) -> Path:
    """Random passwords for the lab's secrets, made once (a name added later is appended), and
    ``extra`` values, private to root."""
    path = folder / "secrets.env"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    lines = path.read_text().splitlines()
    have = {line.partition("=")[0]: line for line in lines}
    wanted = {name: have.get(name) or f"{name}={secrets.token_urlsafe(18)}" for name in SECRET_NAMES}
    wanted |= {name: f"{name}={value}" for name, value in extra.items()}
    text = "".join(f"{line}\n" for line in [*[l for l in lines if l.partition("=")[0] not in wanted], *wanted.values()])
    if text != "".join(f"{line}\n" for line in lines):
        path.write_text(text)
    return path
