"""Lab VPS hosts: containers with their own sshd and Docker engine, reached over real SSH on
127.0.0.1, so that ``pyinfra .lab/inventory.py deploy.py`` works exactly as against a server.

``up`` builds the images (cached), starts ``vsa-lab-1`` .. ``vsa-lab-N``, writes ``.lab/inventory.py``,
starts the demo upstream ``demo-app`` on flowbiz_ext in each host and the ACME test CA ``vsa-lab-acme``
(see ``acme``). ``down`` removes all of it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import VsaError
from ..config import deep_merge
from .images import ensure_images

PREFIX = "vsa-lab-"
LABEL = "vsa.lab"
VPS_IMAGE = "vps"
DEMO_IMAGE = "demo-app"
# Every lab container runs with these; see shared/LAB-NOTES.md (no --privileged here).
RUN_FLAGS = ["--init", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
             "--security-opt", "apparmor=unconfined", "--cgroupns", "host",
             "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run"]
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


class LabError(VsaError):
    pass


@dataclass(frozen=True)
class LabHost:
    name: str
    ssh_port: int
    ssh_user: str
    ssh_key: str
    http_port: int
    https_port: int


def _docker(*args: str, input: bytes | None = None, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], input=input, capture_output=True)
    if check and result.returncode != 0:
        raise LabError(f"docker {' '.join(args[:3])}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode(errors="replace")


def lab_dir(root: Path) -> Path:
    return root / ".lab"


def _ssh_key(folder: Path) -> Path:
    key = folder / "id_ed25519"
    if not key.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vsa-ops-lab", "-f", str(key)],
                       check=True, capture_output=True)
    return key


def _port(container: str, port: int) -> int:
    return int(_docker("port", container, f"{port}/tcp").splitlines()[0].rsplit(":", 1)[1])


def _containers() -> list[str]:
    names = _docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").split()
    return sorted(names, key=lambda n: int(n.removeprefix(PREFIX)) if n.removeprefix(PREFIX).isdigit() else 0)


def hosts(root: Path) -> list[LabHost]:
    key = str(lab_dir(root) / "id_ed25519")
    return [LabHost(name, _port(name, 22), "root", key, _port(name, 80), _port(name, 443))
            for name in _containers() if _running(name)]


def _running(name: str) -> bool:
    return _docker("inspect", "-f", "{{.State.Running}}", name, check=False).strip() == "true"


def _wait(name: str, command: list[str], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(["docker", "exec", name, *command], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise LabError(f"{name}: {what} did not come up within {seconds:.0f} s (see docker logs {name})")


def up(root: Path, count: int = 1, log=print) -> list[LabHost]:
    """Start lab hosts 1..count (keeping those already running) and write the lab inventory."""
    # Every image, so that deploys can ship what hosts lack; the hosts themselves start with only
    # demo-app loaded.
    tags = ensure_images(log=log)
    folder = lab_dir(root)
    key = _ssh_key(folder)
    public = (key.with_suffix(".pub")).read_text().strip()
    for index in range(1, count + 1):
        name = f"{PREFIX}{index}"
        if _running(name):
            continue
        _docker("rm", "-f", "-v", name, check=False)
        log(f"lab: starting {name}")
        _docker("run", "-d", "--name", name, "--hostname", name, "--label", LABEL, *RUN_FLAGS,
                "-v", f"{name}-docker:/var/lib/docker", "-e", f"SSH_AUTHORIZED_KEYS={public}",
                "-p", "127.0.0.1::22", "-p", "127.0.0.1::80", "-p", "127.0.0.1::443", tags[VPS_IMAGE])
    for index in range(1, count + 1):
        name = f"{PREFIX}{index}"
        _wait(name, ["docker", "info"], "its Docker engine")
        _start_demo_app(name, tags[DEMO_IMAGE])
    lab_hosts = hosts(root)
    for lab_host in lab_hosts:
        _wait_ssh(lab_host)
    from . import acme  # here, not at the top: acme builds on this module

    acme.start(root, [h.name for h in lab_hosts], log=log)  # the ACME test CA, on the network vsa-lab
    write_inventory(folder, lab_hosts, acme.directory_url(), acme.listener_ca(root).read_text(),
                    acme.issuer_roots(root))
    return lab_hosts


def _start_demo_app(name: str, image: str) -> None:
    """demo-app on flowbiz_ext, port 8080: the upstream that lab domains point at."""
    if _docker("exec", name, "docker", "image", "inspect", image, check=False).strip() in ("", "[]"):
        saved = subprocess.run(["docker", "save", image], capture_output=True, check=True).stdout
        _docker("exec", "-i", name, "docker", "load", "-q", input=saved)
    _docker("exec", name, "sh", "-c",
            "docker network inspect flowbiz_ext >/dev/null 2>&1 || docker network create flowbiz_ext >/dev/null; "
            f"if docker inspect demo-app >/dev/null 2>&1; then docker start demo-app >/dev/null; "
            f"else docker run -d --name demo-app --network flowbiz_ext "
            f"--restart unless-stopped --log-opt max-size=1m {image} >/dev/null; fi")


def _wait_ssh(lab_host: LabHost, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = subprocess.run(
            ["ssh", "-i", lab_host.ssh_key, "-p", str(lab_host.ssh_port), "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
             f"{lab_host.ssh_user}@127.0.0.1", "true"], capture_output=True)
        if result.returncode == 0:
            return
        time.sleep(0.5)
    raise LabError(f"{lab_host.name}: SSH on 127.0.0.1:{lab_host.ssh_port} did not answer within {seconds:.0f} s")


def _secrets(folder: Path) -> Path:
    """Random passwords for the lab's secrets, made once, private to root."""
    path = folder / "secrets.env"
    if not path.exists():
        names = ("VSA_POSTGRES_PASSWORD", "VSA_GRAFANA_ADMIN_PASSWORD")
        text = "".join(f"{name}={secrets.token_urlsafe(18)}\n" for name in names)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    return path


def write_inventory(folder: Path, lab_hosts: list[LabHost], acme_directory: str, acme_listener_ca: str,
                    acme_roots: Path) -> Path:
    """``.lab/inventory.py``: the lab hosts as a pyinfra inventory, in the groups ``lab`` and ``hubs``.

    Their data points certbot at the lab's ACME CA and trusts its HTTPS, keeps the lab's domain
    registry and secrets in .lab/, and tells probes where each host's ports 80 and 443 are
    published and which root signs the certificates they serve.
    """
    overrides = deep_merge(LAB_OVERRIDES, {"reverse_proxy": {"certbot": {
        "acme_server": acme_directory, "acme_ca_bundle": acme_listener_ca}}})
    entries = []
    for h in lab_hosts:
        data = {"ssh_hostname": "127.0.0.1", "ssh_port": h.ssh_port, "ssh_user": h.ssh_user, "ssh_key": h.ssh_key,
                "ssh_strict_host_key_checking": "off", "ssh_known_hosts_file": "/dev/null",
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


def down(root: Path, log=print) -> int:
    """Remove every lab container and its Docker volume, and the lab inventory."""
    names = _containers()
    for name in names:
        log(f"lab: removing {name}")
        _docker("rm", "-f", "-v", name, check=False)
        _docker("volume", "rm", "-f", f"{name}-docker", check=False)
    from . import acme

    acme.stop(root)
    for name in ("inventory.py", "domains.yml"):
        (lab_dir(root) / name).unlink(missing_ok=True)
    return len(names)


def info(root: Path) -> dict:
    """Lab hosts, and the ACME test CA: ``ca_bundle`` (its issuing root + listener CA), directory URL."""
    from . import acme

    return {"hosts": [asdict(h) for h in hosts(root)], **acme.info(root)}


def status(root: Path) -> list[tuple[str, str]]:
    return [(name, _docker("inspect", "-f", "{{.State.Status}}", name, check=False).strip()) for name in _containers()]
