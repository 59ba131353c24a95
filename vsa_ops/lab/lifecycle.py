"""The lab as a whole: ``up`` builds the images (cached), starts lab hosts ``vsa-lab-1`` ..
``vsa-lab-N`` and the ACME test CA, and writes ``.lab/inventory.py``, so that
``pyinfra .lab/inventory.py deploy.py`` works exactly as against a server; ``down`` removes it all.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..config.plan_access import PlanIdentity
from . import acme, backup_server, hosts
from .hosts import LabHost
from .images import ensure_images
from .inventory import KNOWN_HOSTS, PLAN_INVENTORY, write_inventory
from .names import lab_dir

VPS_IMAGE = "vps"
DEMO_IMAGE = "demo-app"
ECHO_IMAGE = "echo"


def up(root: Path, count: int = 1, log=print, backups: bool = False) -> list[LabHost]:
    """Start lab hosts 1..count (keeping those already running), the CA and the backup server; write
    the lab inventory (``backups``: with each host's backup repository on the server set)."""
    # Every image, so that deploys can ship what hosts lack; the hosts themselves start with only
    # demo-app loaded.
    tags = ensure_images(log=log)
    folder = lab_dir(root)
    key = hosts.ssh_key(folder)
    hosts.start(count, key, tags[VPS_IMAGE], tags[DEMO_IMAGE], log=log, echo_image=tags[ECHO_IMAGE])
    lab_hosts = hosts.running_hosts(key)
    acme.start(root, [h.name for h in lab_hosts], log=log)
    backup_server.start(root, log=log)
    # sshd is up (start waited for it), so its keys exist: vsa-ops checks them like a server's.
    (folder / KNOWN_HOSTS).write_text(hosts.known_hosts(lab_hosts))
    write_inventory(folder, lab_hosts, acme.directory_url(), acme.listener_ca(root).read_text(),
                    acme.issuer_roots(root), backups=backup_server.repository if backups else None,
                    extra_secrets={"VSA_BACKUP_SSH_KEY": backup_server.key_secret(root)},
                    plan_key=hosts.ssh_key(folder, hosts.PLAN_KEY))
    return lab_hosts


def down(root: Path, log=print, purge: bool = False) -> int:
    """Remove every lab host and its Docker volume, the CA and its network, and the lab inventory;
    the backup server and its repositories stay unless ``purge``."""
    removed = hosts.remove_all(log=log)
    acme.stop(root)
    if backup_server.remove(purge):
        log(f"lab: removed {backup_server.CONTAINER} and its repositories")
    for name in ("inventory.py", PLAN_INVENTORY, "domains.yml", KNOWN_HOSTS):
        (lab_dir(root) / name).unlink(missing_ok=True)
    return len(removed)


def info(root: Path) -> dict:
    """Lab hosts, the plan identity's account and key (``.lab/plan-inventory.py`` logs in with them),
    and the ACME test CA: ``ca_bundle`` (its issuing root + listener CA), directory URL."""
    return {"hosts": [asdict(h) for h in hosts.running_hosts(lab_dir(root) / "id_ed25519")],
            "plan_ssh_user": PlanIdentity().user, "plan_ssh_key": str(lab_dir(root) / hosts.PLAN_KEY),
            **acme.info(root)}


def status() -> list[tuple[str, str]]:
    return hosts.status()
