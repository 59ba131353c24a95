"""Preflight's checks of what a host is: pure functions from the facts read on it (host_facts) and the
host's configuration to one ``Check`` each. Nothing here connects or changes anything."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import HubConfig
from ..config.storage import FstabEntry
from .host_facts import HostFacts

SUPPORTED_OS = {"debian": ("12", "13"), "ubuntu": ("22.04", "24.04")}
SUPPORTED_TEXT = "Debian 12/13 and Ubuntu 22.04/24.04"
DOCKER_MINIMUM = (20, 10)
DOCKER_MOUNT = "/var/lib/docker"
# What the root disk needs beyond Docker's data: the directory tree, NGINX's logs, the audit trail.
ROOT_FLOOR = 1 << 30
CLOCK_OK_SECONDS = 5
CLOCK_FAIL_SECONDS = 300
GIB = 1 << 30


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "warn" or "fail"
    message: str
    fix: str = ""

    def as_dict(self) -> dict:
        return {"check": self.name, "status": self.status, "message": self.message, "fix": self.fix}


def _container(facts: HostFacts) -> str:
    return f"in a container ({facts.container})"


def operating_system(facts: HostFacts) -> Check:
    name = facts.os_name or f"{facts.os_id} {facts.os_version}".strip() or "an unknown system (no /etc/os-release)"
    if facts.os_version in SUPPORTED_OS.get(facts.os_id, ()):
        return Check("os", "ok", f"{name} (supported: {SUPPORTED_TEXT})")
    return Check("os", "fail", f"{name} is not supported; vsa-ops supports {SUPPORTED_TEXT}",
                 f"Install the VPS from a {SUPPORTED_TEXT} image.")


def privileges(facts: HostFacts, sudo_configured: bool) -> Check:
    if facts.uid == 0 and not facts.sudo_user:
        return Check("privileges", "ok", "logged in as root")
    if facts.uid == 0:
        if sudo_configured:
            return Check("privileges", "ok", f"{facts.sudo_user} has sudo without a password")
        return Check("privileges", "warn", f"{facts.sudo_user} has sudo without a password, but the host data does "
                     "not set _sudo, so the deploy would run as that user",
                     "Set _sudo=True in the host's data in the inventory.")
    return Check("privileges", "fail", f"{facts.user or 'the login user'} is not root and has no sudo without a password",
                 "Log in as root (ssh_user='root'), or give the user NOPASSWD sudo in /etc/sudoers.d/ and set _sudo=True.")


def _relabel(entry: FstabEntry) -> str:
    tool = "fatlabel" if entry.fstype == "vfat" else "e2label"
    return f"`{tool} /dev/X {entry.label}` on the disk for {entry.mountpoint} (find it with `lsblk -f`)"


def fstab_sources(facts: HostFacts, hub: HubConfig) -> list[Check]:
    """Every LABEL the fstab will name exists; a missing one fails, unless its line is written with
    nofail (the Docker disk's is), or the host is a container, which never reads fstab at boot."""
    checks = []
    for entry in hub.storage.fstab:
        name = f"fstab {entry.mountpoint}"
        device = facts.labels.get(entry.label)
        if device:
            checks.append(Check(name, "ok", f"{entry.spec} is {device}"))
        elif facts.in_container:
            checks.append(Check(name, "warn", f"no filesystem has {entry.spec}: unavoidable {_container(facts)}, "
                                "which has no disks of its own and never reads fstab at boot"))
        elif entry.mountpoint == DOCKER_MOUNT or "nofail" in entry.options.split(","):
            checks.append(Check(name, "warn", f"no filesystem has {entry.spec}: its line is written with "
                                "nofail,x-systemd.device-timeout=10s, so the host boots without it and Docker's data "
                                "stays on the root disk", f"Label the Docker disk: {_relabel(entry)}."))
        elif entry.mountpoint == "/":
            checks.append(Check(name, "fail", f"no filesystem has {entry.spec}, and / is "
                                f"{facts.mounts.get('/', 'unknown')}: the host would not boot with this fstab",
                                f"`e2label {facts.mounts.get('/', '/dev/X')} {entry.label}`, or set the / entry of "
                                "vsa.storage.fstab to the root filesystem's label (`blkid`)."))
        else:
            checks.append(Check(name, "fail", f"no filesystem has {entry.spec}",
                                f"{_relabel(entry)[0].upper()}{_relabel(entry)[1:]}, or change the entry in vsa.storage.fstab."))
    return checks


def root_device(facts: HostFacts, hub: HubConfig) -> Check | None:
    """The device mounted at / is the one the fstab's / line names (None: no / line, or its label
    is missing, which fstab_sources reports)."""
    entry = next((e for e in hub.storage.fstab if e.mountpoint == "/"), None)
    mounted = facts.mounts.get("/", "unknown")
    if entry is None:
        return None
    if facts.in_container:
        return Check("root device", "warn", f"/ is {mounted}: unavoidable {_container(facts)}, whose root is not a disk")
    device = facts.labels.get(entry.label)
    if device is None:
        return None
    if device == mounted:
        return Check("root device", "ok", f"/ is {mounted}, the filesystem with {entry.spec}")
    return Check("root device", "fail", f"/ is {mounted} but {entry.spec} is {device}: the next boot would mount "
                 "another filesystem at /", f"Set the / entry of vsa.storage.fstab to the label of {mounted} (`blkid {mounted}`).")


def disk_space(facts: HostFacts, hub: HubConfig) -> list[Check]:
    """Room for the retention caps on the disk that holds Docker's data, and a floor on /."""
    caps = sum(hub.volume_caps().values())
    docker_label = next((e.label for e in hub.storage.fstab if e.mountpoint == DOCKER_MOUNT), None)
    separate = facts.mounts.get(DOCKER_MOUNT) not in (None, facts.mounts.get("/"))
    checks = []
    if separate and DOCKER_MOUNT in facts.disk_free:
        checks.append(_room("disk Docker", f"the Docker disk ({facts.mounts[DOCKER_MOUNT]})",
                            *facts.disk_free[DOCKER_MOUNT], caps, "the retention caps"))
        root_need, what = ROOT_FLOOR, "the tree, logs and audit trail"
    elif docker_label and docker_label in facts.labels and facts.labels[docker_label] in facts.device_sizes:
        size = facts.device_sizes[facts.labels[docker_label]]
        checks.append(_room("disk Docker", f"the Docker disk ({facts.labels[docker_label]}, not mounted yet)",
                            size, size, caps, "the retention caps"))
        root_need, what = ROOT_FLOOR, "the tree, logs and audit trail"
    else:
        root_need, what = caps + ROOT_FLOOR, "the retention caps (Docker's data is on /), the tree, logs and audit trail"
    if "/" in facts.disk_free:
        checks.insert(0, _room("disk /", "the root disk", *facts.disk_free["/"], root_need, what))
    else:
        checks.insert(0, Check("disk /", "warn", "could not read the free space on / (no df output)"))
    return checks


def _room(name: str, where: str, size: int, available: int, need: int, what: str) -> Check:
    text = f"{where}: {available / GIB:.1f} GiB free of {size / GIB:.1f} GiB; {what} need {need / GIB:.1f} GiB"
    if available >= need:
        return Check(name, "ok", text)
    if size >= need:
        return Check(name, "warn", text + " (data already there may count toward them)",
                     "Free space on it, or lower the caps (vsa.storage.volumes, observability retention).")
    return Check(name, "fail", text, "Use a larger disk, or lower the caps (vsa.storage.volumes, observability retention).")


_PROCESS = re.compile(r'\("([^"]+)",pid=(\d+)')


def ports(facts: HostFacts, hub: HubConfig) -> list[Check]:
    """80 and 443 free, or held by the hub's own NGINX (through Docker's proxy)."""
    nginx = hub.reverse_proxy.nginx.container.container_name
    checks = []
    for port in (80, 443):
        holders = facts.listeners.get(port)
        published = [name for name, text in facts.container_ports.items() if re.search(rf":{port}->", text)]
        if not holders:
            checks.append(Check(f"port {port}", "ok", "free"))
        elif published == [nginx]:
            checks.append(Check(f"port {port}", "ok", f"held by the hub's NGINX ({nginx})"))
        else:
            names = sorted({f"{m[0]} (pid {m[1]})" for h in holders for m in _PROCESS.findall(h)})
            if published:
                names.append(f"container {', '.join(published)}")
            who = ", ".join(names) or "a process preflight cannot name (not read as root)"
            checks.append(Check(f"port {port}", "fail", f"held by {who}",
                                f"Stop and disable {who}, or run it behind the hub as a domain's upstream, "
                                f"so that the hub's NGINX can listen on {port}."))
    return checks


def docker(facts: HostFacts) -> Check:
    if facts.docker_version:
        numbers = tuple(int(n) for n in re.findall(r"\d+", facts.docker_version)[:2])
        if numbers < DOCKER_MINIMUM:
            return Check("docker", "fail", f"Docker {facts.docker_version} is older than the supported 20.10",
                         "Remove it (`apt-get remove docker docker-engine docker.io`) so that the deploy installs "
                         "the distribution's, or upgrade it to 20.10 or later.")
        if not facts.compose_version:
            return Check("docker", "warn", f"Docker {facts.docker_version} without the compose v2 plugin: "
                         "the deploy installs it with apt")
        return Check("docker", "ok", f"Docker {facts.docker_version}, compose {facts.compose_version}")
    if facts.docker_installed and facts.uid != 0:
        return Check("docker", "warn", f"{facts.docker_installed} is installed; only root can ask its daemon more")
    if facts.docker_installed:
        return Check("docker", "fail", f"{facts.docker_installed} is installed but its daemon does not answer",
                     "Start it (`systemctl enable --now docker`) and check `journalctl -u docker`.")
    return Check("docker", "ok", "absent: the deploy installs docker.io and the compose v2 plugin with apt")


def clock(facts: HostFacts, controller_before: float, controller_after: float) -> Check:
    """The host's clock against the controller's (read during the command), and NTP where systemd says."""
    if facts.epoch is None:
        return Check("clock", "warn", "could not read the host's clock")
    slack = (controller_after - controller_before) / 2
    offset = facts.epoch - (controller_before + controller_after) / 2
    off = max(0.0, abs(offset) - slack - 1)  # `date +%s` is whole seconds
    text = f"{round(offset):+d} s from the controller's clock"
    fix = "Turn on time synchronisation (`timedatectl set-ntp true`, or install chrony) and check the controller's clock too."
    if off > CLOCK_FAIL_SECONDS:
        return Check("clock", "fail", f"{text}: ACME and TLS need clocks within minutes", fix)
    if off > CLOCK_OK_SECONDS:
        return Check("clock", "warn", f"{text}: drifting", fix)
    if not facts.systemd:
        why = (f"no systemd, unavoidable {_container(facts)}, whose clock is the machine's" if facts.in_container
               else "no systemd to ask")
        return Check("clock", "warn", f"{text}; whether NTP keeps it right cannot be read: {why}")
    if facts.ntp_synchronized != "yes":
        return Check("clock", "warn", f"{text}, but timedatectl says it is not synchronised", fix)
    return Check("clock", "ok", f"{text}, synchronised (timedatectl)")


def acme(facts: HostFacts, hub: HubConfig, tls_domains: bool) -> Check:
    url = hub.reverse_proxy.certbot.acme_server
    trust = "the configured acme_ca_bundle" if hub.reverse_proxy.certbot.acme_ca_bundle else "the system's CAs"
    if not facts.acme_tool:
        return Check("acme", "warn", f"neither curl nor wget on the host: could not check that it reaches {url}",
                     "`apt-get install -y curl`, then run preflight again.")
    if facts.acme_status is not None and 200 <= facts.acme_status < 300:
        return Check("acme", "ok", f"reaches {url} over HTTPS (HTTP {facts.acme_status}, trusting {trust})")
    what = f"HTTP {facts.acme_status}" if facts.acme_status else (facts.acme_error or "no answer")
    return Check("acme", "fail" if tls_domains else "warn", f"cannot fetch {url} from the host: {what}",
                 "Allow outbound HTTPS from the host to the ACME server; for a private CA set "
                 "vsa.reverse_proxy.certbot.acme_ca_bundle.")
