"""``vsa-lab-backup``: the lab's backup repository server (issue 13), an SFTP server on the network
``vsa-lab`` at a fixed address, holding restic repositories under /srv/restic on the Docker volume
``vsa-lab-backup-data``. It outlives lab hosts: ``lab down`` keeps it and its volume (a disaster
drill destroys a host, not its backups) unless ``--purge``."""

from __future__ import annotations

import base64
import ipaddress
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import engine, network
from .errors import LabError
from .images import ensure_images
from .names import lab_dir

CONTAINER = "vsa-lab-backup"
VOLUME = "vsa-lab-backup-data"
IMAGE = "sftp"
BACKUP_IP = str(ipaddress.ip_network(network.SUBNET)[3])  # 10.203.7.3, beside the CA at .2
USER = "vsa"


def repository(host: str) -> str:
    """The restic repository of lab host ``host`` on the server."""
    return f"sftp:{USER}@{BACKUP_IP}:/srv/restic/{host}"


def key(root: Path) -> Path:
    """``.lab/backup_ed25519``: the key lab hosts log in to the server with (made once)."""
    path = lab_dir(root) / "backup_ed25519"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        private = ed25519.Ed25519PrivateKey.generate()
        path.touch(mode=0o600)
        path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption()))
    return path


def key_secret(root: Path) -> str:
    """The key as the secret ``VSA_BACKUP_SSH_KEY`` holds it: base64 of the OpenSSH private key."""
    return base64.b64encode(key(root).read_bytes()).decode()


def _public_key(root: Path) -> str:
    private = serialization.load_ssh_private_key(key(root).read_bytes(), password=None)
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH).decode() + " vsa-lab-backup"


def start(root: Path, log=print) -> None:
    """Run the server on ``vsa-lab`` (the network must exist), keeping one already running."""
    tag = ensure_images([IMAGE], log=log)[IMAGE]
    current, image = engine.container(CONTAINER), engine.image(tag)
    wanted = f"SSH_AUTHORIZED_KEYS={_public_key(root)}"
    # A server left by another lab (another checkout, or a lab whose key was made anew) keeps its
    # repositories (the volume) but must take this lab's key.
    if current is None or image is None or current.attrs["Image"] != image.id \
            or wanted not in (current.attrs["Config"].get("Env") or []):
        engine.remove_container(CONTAINER)
        log(f"lab: starting {CONTAINER} (SFTP at {USER}@{BACKUP_IP})")
        client = engine.client()
        with engine.failing(f"start {CONTAINER}"):
            client.containers.run(
                tag, detach=True, name=CONTAINER, hostname=CONTAINER, init=True, network=network.NETWORK,
                networking_config={network.NETWORK: client.api.create_endpoint_config(ipv4_address=BACKUP_IP)},
                environment={"SSH_AUTHORIZED_KEYS": _public_key(root)},
                volumes={VOLUME: {"bind": "/srv/restic", "mode": "rw"}},
                log_config={"type": "json-file", "config": {"max-size": "1m"}})
    else:
        if not current.attrs["State"]["Running"]:
            with engine.failing(f"start {CONTAINER}"):
                current.start()
        network.connect(CONTAINER, BACKUP_IP)
    deadline = time.monotonic() + 30
    while not engine.exec_ok(CONTAINER, ["sh", "-c", "pidof sshd >/dev/null"]):
        if time.monotonic() > deadline:
            raise LabError(f"{CONTAINER}: sshd did not start (see docker logs {CONTAINER})")
        time.sleep(0.3)


def remove(purge: bool) -> bool:
    """With ``purge``: the server and its repositories; without: nothing (it outlives lab hosts)."""
    if purge:
        engine.remove_container(CONTAINER)
        engine.remove_volume(VOLUME)
    return purge
