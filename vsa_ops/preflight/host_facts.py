"""What preflight reads on a host: the one remote command (the static program ``host_read.sh``) and
the facts it prints, parsed. Pure: no connection here."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from importlib import resources

PROGRAM = "host_read.sh"


def program_text() -> str:
    return resources.files(__package__).joinpath(PROGRAM).read_text()


def read_command(acme_url: str, ca_bundle: str | None) -> str:
    """The one command preflight runs on a host: the program as root (directly, or through sudo
    when it needs no password), else as the login user, who then shows as not root."""
    program = shlex.quote(program_text())
    arguments = " ".join(shlex.quote(a) for a in ["preflight", acme_url, *([ca_bundle] if ca_bundle else [])])
    return (f"p={program}; if [ \"$(id -u)\" != 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; "
            f"then exec sudo -n sh -c \"$p\" {arguments}; else exec sh -c \"$p\" {arguments}; fi")


@dataclass
class HostFacts:
    uid: int = -1
    user: str = ""
    sudo_user: str = ""
    sudo: str = ""  # for a login user that is not root: "nopasswd" or "no"
    os_id: str = ""
    os_version: str = ""
    os_name: str = ""
    container: str = "none"
    systemd: bool = False
    ntp_synchronized: str = ""  # "yes", "no", or "" when timedatectl did not say
    epoch: int | None = None
    labels: dict[str, str] = field(default_factory=dict)  # label -> device
    device_sizes: dict[str, int] = field(default_factory=dict)  # device -> bytes
    mounts: dict[str, str] = field(default_factory=dict)  # mount point -> source
    disk_free: dict[str, tuple[int, int]] = field(default_factory=dict)  # mount point -> (size, available) bytes
    listeners: dict[int, list[str]] = field(default_factory=dict)  # port -> processes ("-": unknown)
    docker_version: str | None = None
    docker_installed: str | None = None  # `dockerd --version` when the engine does not answer
    compose_version: str | None = None
    container_ports: dict[str, str] = field(default_factory=dict)  # running container -> its published ports
    acme_status: int | None = None  # HTTP status of the ACME directory, None when it could not be fetched
    acme_error: str = ""
    acme_tool: bool = True

    @property
    def in_container(self) -> bool:
        return self.container not in ("", "none")


def parse(text: str) -> HostFacts:
    """The facts ``host_read.sh`` printed; unknown lines are ignored (a newer program, an older parser)."""
    facts = HostFacts()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        words = rest.split()
        if key == "uid" and rest.strip().isdigit():
            facts.uid = int(rest)
        elif key in ("user", "sudo_user", "sudo", "os_id", "os_version", "os_name", "container",
                     "ntp_synchronized"):
            setattr(facts, key, rest.strip())
        elif key == "systemd":
            facts.systemd = rest.strip() == "yes"
        elif key == "epoch" and rest.strip().isdigit():
            facts.epoch = int(rest)
        elif key == "label" and len(words) >= 2:
            facts.labels.setdefault(rest.split(" ", 1)[1], words[0])
        elif key == "device_size" and len(words) == 2 and words[1].isdigit():
            facts.device_sizes[words[0]] = int(words[1])
        elif key == "mount" and len(words) == 2:
            facts.mounts[words[0]] = words[1]
        elif key == "df" and len(words) == 3 and words[1].isdigit() and words[2].isdigit():
            facts.disk_free[words[0]] = (int(words[1]) * 1024, int(words[2]) * 1024)
        elif key == "listen" and len(words) >= 1 and words[0].isdigit():
            facts.listeners.setdefault(int(words[0]), []).append(" ".join(words[1:]) or "-")
        elif key in ("docker_version", "docker_installed", "compose_version"):
            setattr(facts, key, rest.strip() or None)
        elif key == "container_ports" and words:
            facts.container_ports[words[0]] = " ".join(words[1:])
        elif key == "acme":
            code = words[-1] if words else ""
            facts.acme_status = int(code) if code.isdigit() and code != "000" else None
            facts.acme_error = " ".join(words[:-1]) if words else "no answer"
        elif key == "acme_tool":
            facts.acme_tool = False
    return facts
