"""The lab: real lab VPS containers reached over SSH. Tests here need dockerd; they fail naming it
when it is missing (and are left out with --without-docker, see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[2]
LAB_INVENTORY = ROOT / ".lab" / "inventory.py"


def _require_docker(config: pytest.Config):
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        missing(config, "a running Docker engine")


def vsa(*args: str, check: bool = True, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VSA_")} | (env or {})
    result = subprocess.run(["vsa-ops", *args], cwd=ROOT, capture_output=True, text=True, env=environment,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"vsa-ops {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


class Lab:
    """One lab host, reached over SSH like a server, with helpers to look inside it."""

    def __init__(self):
        self.inventory = LAB_INVENTORY
        self.refresh()

    def refresh(self) -> None:
        """Ports and files as `lab info` says now (they change when a host is recreated)."""
        self.info = json.loads(vsa("lab", "info", "--json").stdout)
        self.host = self.info["hosts"][0]
        self.name = self.host["name"]

    def recreate(self) -> None:
        """A fresh host: what earlier tests left is gone."""
        vsa("lab", "down")
        vsa("lab", "up")
        self.refresh()

    def sh(self, command: str, check: bool = True) -> str:
        result = subprocess.run(["docker", "exec", self.name, "sh", "-c", command], capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} exited {result.returncode}: {result.stderr}")
        return result.stdout

    def deploy(self, *args: str, inventory: Path | None = None, check: bool = True,
               env: dict | None = None) -> subprocess.CompletedProcess:
        return vsa("deploy", "-i", str(inventory or self.inventory), *args, check=check, env=env)

    def containers(self) -> dict[str, dict]:
        """Inner containers by name: state, start time, user, networks, mounts."""
        ids = self.sh("docker ps -aq").split()
        if not ids:
            return {}
        data = json.loads(self.sh("docker inspect " + " ".join(ids)))
        return {c["Name"].lstrip("/"): c for c in data}

    def started(self) -> dict[str, str]:
        return {name: c["State"]["StartedAt"] for name, c in self.containers().items()}

    def inventory_with(self, tmp_path: Path, overrides: dict) -> Path:
        """A copy of the lab inventory whose group_data/lab.py sets ``vsa`` overrides."""
        folder = tmp_path / "inventory"
        (folder / "group_data").mkdir(parents=True)
        shutil.copy(self.inventory, folder / "inventory.py")
        (folder / "group_data" / "lab.py").write_text(f"vsa = {overrides!r}\n")
        return folder / "inventory.py"


@pytest.fixture(scope="session")
def lab(request) -> Lab:
    """A fresh lab host (anything an earlier run left is removed first), deployed once."""
    _require_docker(request.config)
    vsa("lab", "down")
    vsa("lab", "up")
    yield Lab()
    if not os.environ.get("VSA_KEEP_LAB"):
        vsa("lab", "down", check=False)


def commands_run(output: str) -> int:
    """Remote commands in pyinfra -vvv output (one '>>>' line each)."""
    return len(re.findall(r"^\[[^\]]+\] >>> ", output, re.M))
