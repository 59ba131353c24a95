"""Lab VPS hosts: containers ``vsa-lab-N`` with their own sshd and Docker engine, reached over real SSH
on 127.0.0.1, each with the demo upstream ``demo-app`` on its flowbiz_ext network.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from . import engine
from .errors import LabError
from .names import HOST_LABEL, PREFIX, host_name

# Every lab host runs with these; see shared/LAB-NOTES.md (--privileged fails here).
RUN_OPTIONS = {
    "init": True,
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "cgroupns": "host",
    "tmpfs": {"/run": ""},
}
PORTS = (22, 80, 443)  # each published on a free port of 127.0.0.1


@dataclass(frozen=True)
class LabHost:
    name: str
    ssh_port: int
    ssh_user: str
    ssh_key: str
    http_port: int
    https_port: int


def ssh_key(folder: Path, name: str = "id_ed25519") -> Path:
    """``folder/NAME`` (and ``.pub``), made once: by default the key every lab host lets in as root;
    ``PLAN_KEY`` is the plan identity's (which a deploy lets in, see lab.inventory)."""
    key = folder / name
    if not key.exists():
        folder.mkdir(parents=True, exist_ok=True)
        private = ed25519.Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        key.with_name(f"{name}.pub").write_bytes(public + b" vsa-ops-lab\n")
        key.touch(mode=0o600)
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    return key


PLAN_KEY = "id_plan_ed25519"


def names() -> list[str]:
    """Every lab host container, running or not, in index order."""
    with engine.failing("list lab hosts"):
        found = engine.client().containers.list(all=True, sparse=True, filters={"label": HOST_LABEL})
    listed = [c.attrs["Names"][0].lstrip("/") for c in found]
    return sorted(listed, key=lambda n: int(n.removeprefix(PREFIX)) if n.removeprefix(PREFIX).isdigit() else 0)


def running_hosts(key: Path) -> list[LabHost]:
    """The running lab hosts with their published ports, reached as root with ``key``."""
    found = []
    for name in names():
        container = engine.container(name)
        if container is not None and container.attrs["State"]["Running"]:
            ports = [engine.published_port(container, port) for port in PORTS]
            found.append(LabHost(name, ports[0], "root", str(key), ports[1], ports[2]))
    return found


def start(count: int, key: Path, vps_image: str, demo_image: str, log=print, echo_image: str | None = None) -> None:
    """Start lab hosts 1..count (keeping those already running), each with demo-app (and the echo
    upstream ``echo``, when given), SSH answering."""
    public = key.with_suffix(".pub").read_text().strip()
    for index in range(1, count + 1):
        name = host_name(index)
        if engine.running(name):
            continue
        engine.remove_container(name, volumes=True)
        log(f"lab: starting {name}")
        with engine.failing(f"start {name}"):
            engine.client().containers.run(
                vps_image, detach=True, name=name, hostname=name, labels={HOST_LABEL: ""},
                volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                         f"{name}-docker": {"bind": "/var/lib/docker", "mode": "rw"}},
                environment={"SSH_AUTHORIZED_KEYS": public},
                ports={f"{port}/tcp": ("127.0.0.1", None) for port in PORTS}, **RUN_OPTIONS)
    for index in range(1, count + 1):
        name = host_name(index)
        _wait(name, ["docker", "info"], "its Docker engine")
        _start_demo_app(name, demo_image)
        if echo_image:
            _start_demo_app(name, echo_image, container="echo")
    for lab_host in running_hosts(key):
        _wait_ssh(lab_host)


def known_hosts(lab_hosts: list[LabHost]) -> str:
    """known_hosts lines (``[127.0.0.1]:PORT type key``) for every host key each lab host's sshd
    offers, read from inside the container (the lab trusts its own engine, not the network)."""
    lines = []
    for lab_host in lab_hosts:
        keys = engine.exec_output(lab_host.name, ["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
        for key in keys.splitlines():
            kind, _, rest = key.strip().partition(" ")
            if kind and rest:
                lines.append(f"[127.0.0.1]:{lab_host.ssh_port} {kind} {rest.split()[0]}\n")
    return "".join(lines)


def remove_all(log=print) -> list[str]:
    """Remove every lab host and its Docker volume; returns their names."""
    removed = names()
    for name in removed:
        log(f"lab: removing {name}")
        engine.remove_container(name, volumes=True)
        engine.remove_volume(f"{name}-docker")
    return removed


def status() -> list[tuple[str, str]]:
    """Each lab host and its container state (running, exited, ...)."""
    rows = []
    for name in names():
        container = engine.container(name)
        rows.append((name, container.status if container is not None else "removed"))
    return rows


def _wait(name: str, command: list[str], what: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if engine.exec_ok(name, command):
            return
        time.sleep(0.5)
    raise LabError(f"{name}: {what} did not come up within {seconds:.0f} s (see docker logs {name})")


def _start_demo_app(name: str, image: str, container: str = "demo-app") -> None:
    """demo-app (or another upstream ``container``) on flowbiz_ext, port 8080: what lab domains point at."""
    if not engine.exec_ok(name, ["docker", "image", "inspect", image]):
        # The inner engine is reached only through exec, and the SDK's exec has no plain stdin stream:
        # the docker CLI's pipe streams the image from the outer engine without holding it in memory.
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        load = subprocess.run(["docker", "exec", "-i", name, "docker", "load", "-q"], stdin=save.stdout,
                              capture_output=True)
        save.stdout.close()
        saved = save.wait()
        if saved or load.returncode:
            errors = (save.stderr.read() + load.stderr).decode(errors="replace").strip()
            raise LabError(f"{name}: docker save {image} | docker load: {errors[-2000:]}")
    engine.exec_output(name, ["sh", "-c",
        "docker network inspect flowbiz_ext >/dev/null 2>&1 || docker network create flowbiz_ext >/dev/null; "
        f"if docker inspect {container} >/dev/null 2>&1; then docker start {container} >/dev/null; "
        f"else docker run -d --name {container} --network flowbiz_ext "
        f"--restart unless-stopped --log-opt max-size=1m {shlex.quote(image)} >/dev/null; fi"])  # fmt: skip


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
