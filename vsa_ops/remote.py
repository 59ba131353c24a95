"""Read-only commands on inventory hosts over pyinfra's own connectors (the inventory's SSH settings),
for commands that only look: domains, certs, audit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .inventory import load_inventory


def run_on_hosts(inventory_file: Path, root: Path, command_for: Callable[[object], str | None],
                 limit: str | None = None) -> dict[str, tuple[bool, str]]:
    """Run ``command_for(host)`` on each host (skipped where it returns None); stdout by host name."""
    from gevent import monkey

    monkey.patch_all()
    from pyinfra.api import Config, State, StringCommand
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.context import ctx_host, ctx_state

    inventory = load_inventory(inventory_file, root)
    state = State(inventory=inventory, config=Config())
    with ctx_state.use(state):
        connect_all(state)
        results = {}
        try:
            for host in inventory:
                if limit not in (None, host.name) and limit not in host.groups:
                    continue
                command = command_for(host)
                if command is None:
                    continue
                if host not in state.activated_hosts:
                    results[host.name] = (False, "could not connect")
                    continue
                with ctx_host.use(host):
                    ok, output = host.run_shell_command(StringCommand(command), print_output=False)
                results[host.name] = (ok, output.stdout)
        finally:
            disconnect_all(state)
    return results
