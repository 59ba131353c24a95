"""Preparing the lab for a row: the lab hosts and their inventories, sshd counting each remote command,
the bench's domains in the lab registry, and the untimed steps between measurements."""

from __future__ import annotations

import os
import pprint
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from paths import LAB, ROOT
from progress import log

PREFIX = "vsa-lab-"
BENCH_DOMAIN = re.compile(r"^bench-[a-z0-9-]+\.vsa\.test$")
UPSTREAM = "demo-app:8080"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-vsa-bench.conf"


def vsa_ops() -> list[str]:
    """The console script installed beside this Python, as pyinfra and Ansible are run from theirs: a
    version manager's shim on PATH (pyenv's) would add 0.1-0.3 s of its own to every vsa-ops row."""
    beside = Path(sys.executable).with_name("vsa-ops")
    found = str(beside) if beside.is_file() else shutil.which("vsa-ops")
    if not found:
        raise SystemExit("bench: no vsa-ops command; run `bash .ci/setup` first")
    return [found]


def lab_hosts() -> list[tuple[str, dict]]:
    path = LAB / "inventory.py"
    if not path.exists():
        return []
    namespace: dict = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    hosts = list(namespace.get("lab", []))
    return sorted(hosts, key=lambda h: int(h[0].removeprefix(PREFIX)) if h[0].removeprefix(PREFIX).isdigit() else 0)


def write_inventory(folder: Path, count: int) -> Path:
    """The first ``count`` lab hosts, with the same data as .lab/inventory.py (same registry,
    secrets, ports), so that a row touches exactly those hosts."""
    hosts = lab_hosts()[:count]
    if len(hosts) < count:
        raise RuntimeError(f"the lab has {len(hosts)} hosts, the bench needs {count}")
    path = folder / f"inventory-{count}.py"
    path.write_text(f'"""The first {count} lab hosts of .lab/inventory.py (written by bench/lab_setup.py)."""\n\n'
                    f"lab = {pprint.pformat(hosts, width=120)}\n\nhubs = [name for name, _ in lab]\n")
    return path


def ssh_ports(count: int) -> list[int]:
    return [data["ssh_port"] for _, data in lab_hosts()[:count]]


def host_names(count: int) -> list[str]:
    return [name for name, _ in lab_hosts()[:count]]


def running_hosts() -> int:
    return sum(1 for name, _ in lab_hosts()
               if subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True,
                                 text=True).stdout.strip() == "true")


def verbose_sshd(names: list[str]) -> None:
    """sshd logs one line per session channel; SIGHUP makes it re-read its configuration (new
    connections only). Idempotent."""
    script = (f"grep -qs '^LogLevel VERBOSE' {SSHD_DROPIN} && exit 0; "
              f"printf '# vsa-ops bench: one log line per SSH session (remote command)\\nLogLevel VERBOSE\\n' "
              f"> {SSHD_DROPIN} && kill -HUP $(cat /run/sshd.pid) && sleep 0.5")
    for name in names:
        subprocess.run(["docker", "exec", name, "sh", "-c", script], check=True, capture_output=True)


def sh(argv: list[str], what: str, *, check: bool = True) -> subprocess.CompletedProcess:
    """An untimed step; retried once (the lab is shared), its output shown only on failure."""
    for attempt in range(2):
        result = subprocess.run(argv, cwd=ROOT, env=os.environ, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        if result.returncode == 0 or not check:
            return result
        log(f"{what}: failed (exit {result.returncode}){', retrying' if attempt == 0 else ''}")
        if attempt == 1:
            sys.stderr.write((result.stdout + result.stderr)[-4000:])
            raise RuntimeError(f"{what} failed")
        time.sleep(2)
    raise AssertionError


# -- the lab registry (.lab/domains.yml), where the bench's domains are named bench-*.vsa.test
def registry_path() -> Path:
    hosts = lab_hosts()
    return Path(hosts[0][1].get("vsa_domains_file", LAB / "domains.yml")) if hosts else LAB / "domains.yml"


def save_bench_domains(count: int) -> None:
    """Exactly ``count`` bench domains (TLS off, upstream demo-app:8080) in the lab registry,
    besides whatever else it holds."""
    from vsa_ops.domains import Domain, load_registry, save_registry

    path = registry_path()
    registry = {name: d for name, d in load_registry(path).items() if not BENCH_DOMAIN.match(name)}
    for index in range(count):
        name = f"bench-{index:03d}.vsa.test"
        registry[name] = Domain(name=name, upstream=UPSTREAM, tls=False)
    save_registry(path, registry)


def bench_domains_left() -> list[str]:
    from vsa_ops.domains import load_registry

    path = registry_path()
    return [name for name in load_registry(path) if BENCH_DOMAIN.match(name)] if path.exists() else []
