"""The network floor: what one SSH connection and one remote command cost on the same link, measured
with OpenSSH's own client in the same bench run as the vsa-ops rows. Two rows per domain count:

    ssh -i KEY -p PORT root@127.0.0.1 true
    ssh -i KEY -p PORT root@127.0.0.1 STATE_COMMAND < PATHS

the second runs the exact state command a no-op converge sends (the installed reader, the same path
list on stdin, so the host reads and sends back the same bytes); bench/profile.py captures it. Every
vsa-ops row is also reported as a multiple of the second ("x floor")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab_setup import host_names, lab_hosts
from paths import HERE, ROOT
from progress import log

if TYPE_CHECKING:
    from session import Bench


def ssh_argv(index: int = 0) -> list[str]:
    """OpenSSH to lab host ``index`` with the inventory's own key, user, port and pinned host key."""
    _, data = lab_hosts()[index]
    return ["ssh", "-i", data["ssh_key"], "-p", str(data["ssh_port"]), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}",
            f"{data['ssh_user']}@{data.get('ssh_hostname', '127.0.0.1')}"]


def capture_state_command(bench: Bench, inventory: Path, domains: int) -> dict | None:
    """Runs bench/profile.py once on loopback (untimed) and keeps the state command it sent."""
    folder = bench.tmp / f"state-command-{domains}"
    folder.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, str(HERE / "profile.py"), "--inventory", str(inventory),
                             "--host", host_names(1)[0], "--save-command", str(folder)], cwd=ROOT,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode:
        log(f"  floor: could not capture the state command: {result.stderr[-500:]}")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def floor_rows(bench: Bench, inventory: Path, domains: int, *, with_true: bool = True) -> None:
    """The floor rows for the lab's first host as it is now (``domains`` bench domains converged)."""
    captured = capture_state_command(bench, inventory, domains)
    folder = bench.tmp / f"state-command-{domains}"
    if with_true:
        row = bench.row("floor-true", "floor", "floor: `ssh host true` (OpenSSH, one connection)")
        for _ in range(bench.runs):
            for net in bench.nets:
                bench.measure(row, net, [*ssh_argv(), "true"], host_names(1))
    if captured is None:
        return
    script = (folder / "command.sh").read_text()
    row = bench.row(f"floor-{domains}", "floor", f"floor: `ssh host STATE_COMMAND`, {domains} domains "
                    f"({captured['paths']} paths, {captured['output_bytes']} B back)")
    row.extra.update(domains=domains, paths=captured["paths"], output_bytes=captured["output_bytes"])
    for _ in range(bench.runs):
        for net in bench.nets:
            bench.measure(row, net, [*ssh_argv(), script], host_names(1), stdin=folder / "stdin")
