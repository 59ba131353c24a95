"""Names the lab's parts share: lab host containers, the labels, the lab's folder."""

from __future__ import annotations

from pathlib import Path

from .errors import LabError

PREFIX = "vsa-lab-"  # lab host N is the container vsa-lab-N
HOST_LABEL = "vsa.lab"  # marks lab hosts (and nothing else)
ACME_LABEL = "vsa.lab.acme"  # marks the ACME test CA's container and the network vsa-lab
MAX_HOSTS = 100


def lab_dir(root: Path) -> Path:
    """``.lab/`` of the project: key, inventory, registry, secrets and CA files of the lab."""
    return root / ".lab"


def host_name(index: int) -> str:
    return f"{PREFIX}{index}"


def host_index(host: str | int) -> int:
    """N of lab host ``vsa-lab-N`` (or of N itself), checked to be 1..MAX_HOSTS."""
    text = str(host).removeprefix(PREFIX)
    if not text.isdigit() or not 1 <= int(text) <= MAX_HOSTS:
        raise LabError(f"{host}: not a lab host (vsa-lab-1 .. vsa-lab-{MAX_HOSTS})")
    return int(text)
