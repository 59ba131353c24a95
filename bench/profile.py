"""Where the time of a no-op converge goes, step by step, in one process that does what
`vsa-ops deploy` does (rows_vsa_ops.py runs it, on loopback and through the delay proxy):

    python3 bench/profile.py --inventory INVENTORY --host vsa-lab-1

prints JSON: seconds for each step

    start       interpreter start to the end of the imports of `vsa-ops` (python, gevent's patching,
                pyinfra, pydantic, vsa_ops)
    inventory   loading the inventory and group_data
    render      one host_manifest(): the command's pre-check, which the deploy then starts from
                (a second render happens only while a TLS domain awaits its certificate)
    connect     pyinfra's SSH connect (TCP, key exchange, auth)
    state       the HostState fact: one remote command (exec channel round trips + the script's run)
    plan        make_plan()
    disconnect
    script      the state script alone on the host, through `docker exec` (its run time there,
                plus docker exec's own start-up, shown as exec_overhead)

and the sizes: paths checked and the state command's output in bytes. With --save-command DIR it
also writes the state command and its stdin there (bench/floor.py runs them through OpenSSH).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _process_age() -> float:
    """Seconds since this process started (from /proc; 10 ms resolution)."""
    with open("/proc/self/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as handle:
        uptime = float(handle.read().split()[0])
    return uptime - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--inventory", required=True, type=Path)
    parser.add_argument("--host", required=True)
    parser.add_argument("--save-command", type=Path, default=None, metavar="DIR",
                        help="also write the state command (command.sh) and its stdin (stdin) there: the floor row "
                             "runs exactly that through OpenSSH")
    args = parser.parse_args()

    import vsa_ops.cli  # noqa: F401  (gevent's patching first; each command imports the rest itself)
    # what `vsa-ops deploy` imports in its body and through deploy.py
    import pyinfra_cli.prints  # noqa: F401
    import pyinfra_cli.util  # noqa: F401
    import vsa_ops.deploys.hub  # noqa: F401
    import vsa_ops.fact_publishing  # noqa: F401
    import vsa_ops.pyinfra_glue.runner  # noqa: F401
    import vsa_ops.recording  # noqa: F401
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.context import ctx_host, ctx_state

    from vsa_ops.facts import HostState
    from vsa_ops.host_manifest import host_manifest
    from vsa_ops.planning import read_state
    from vsa_ops.pyinfra_glue.inventory_files import load_inventory
    from vsa_ops.plan import make_plan, managed_paths
    from vsa_ops.project import find_root

    # The state command exactly as the converge sends it, for running it alone on the host below.
    from pyinfra.api.host import Host

    captured: dict[str, str] = {}
    get_fact = Host.get_fact

    def spy(self, fact, *args, **kwargs):
        if fact is HostState:
            captured["stdin"] = kwargs.get("_stdin") or ""  # the paths travel on stdin
            captured["script"] = str(HostState().command(*args, **{k: v for k, v in kwargs.items() if k[0] != "_"}))
        return get_fact(self, fact, *args, **kwargs)

    Host.get_fact = spy

    out: dict = {"start": _process_age()}
    root = find_root(Path(__file__).resolve().parent.parent)
    os.chdir(root)

    t = time.monotonic()
    inventory = load_inventory(args.inventory.resolve(), root)
    out["inventory"] = time.monotonic() - t
    state = State(inventory=inventory, config=Config())
    host = next(h for h in inventory if h.name == args.host)
    with ctx_state.use(state), ctx_host.use(host):
        t = time.monotonic()
        manifest = host_manifest(host, None)
        out["render"] = time.monotonic() - t
        # Connect only this host (the inventory may list more).
        t = time.monotonic()
        connect_all(state)
        out["connect"] = time.monotonic() - t
        t = time.monotonic()
        host_state = read_state(host, manifest)
        out["state"] = time.monotonic() - t
        t = time.monotonic()
        plan = make_plan(manifest, host_state)
        out["plan"] = time.monotonic() - t
        out["plan_empty"] = plan.empty
        t = time.monotonic()
        disconnect_all(state)
        out["disconnect"] = time.monotonic() - t

    paths = managed_paths(manifest)[0]
    script = captured["script"]
    timings, size = [], 0
    for argv in (["true"], ["sh", "-c", script]):
        t = time.monotonic()
        result = subprocess.run(["docker", "exec", "-i", args.host, *argv], capture_output=True,
                                input=captured["stdin"].encode())
        timings.append(time.monotonic() - t)
        size = len(result.stdout)
    if args.save_command:
        (args.save_command / "command.sh").write_text(script)
        (args.save_command / "stdin").write_bytes(captured["stdin"].encode())
    out["exec_overhead"] = timings[0]
    out["script"] = max(0.0, timings[1] - timings[0])
    out["paths"] = len(paths)
    out["command_bytes"] = len(script)
    out["stdin_bytes"] = len(captured["stdin"])
    out["output_bytes"] = size
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
