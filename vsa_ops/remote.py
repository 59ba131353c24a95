"""Work on inventory hosts from the vsa-ops command, outside a pyinfra deploy, over pyinfra's own
connectors (so the inventory's SSH settings apply): read-only commands and facts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .inventory import load_inventory


@contextmanager
def connected(inventory_file: Path, root: Path, limit: str | None = None) -> Iterator[tuple[Any, list]]:
    """The pyinfra state and the selected hosts, connected; hosts that did not connect are left out
    of the list and named in ``state.failed_hosts``."""
    from .greenlets import patch

    patch()
    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.context import ctx_state

    inventory = load_inventory(inventory_file, root)
    state = State(inventory=inventory, config=Config())
    with ctx_state.use(state):
        connect_all(state)
        try:
            hosts = [h for h in inventory if (limit in (None, h.name) or limit in h.groups)
                     and h in state.activated_hosts]
            yield state, hosts
        finally:
            disconnect_all(state)


def on_hosts(inventory_file: Path, root: Path, work: Callable[[Any], Any], limit: str | None = None) -> dict:
    """``work(host)`` for each connected host, with pyinfra's host context set (facts work)."""
    from pyinfra.context import ctx_host

    results = {}
    with connected(inventory_file, root, limit) as (state, hosts):
        for host in load_inventory(inventory_file, root):
            if (limit in (None, host.name) or limit in host.groups) and host.name not in {h.name for h in hosts}:
                results[host.name] = ConnectionError(f"{host.name}: could not connect")
        for host in hosts:
            with ctx_host.use(host):
                results[host.name] = work(host)
    return results


def run_on_hosts(inventory_file: Path, root: Path, command_for: Callable[[object], str | None],
                 limit: str | None = None) -> dict[str, tuple[bool, str]]:
    """Run ``command_for(host)`` on each host (skipped where it returns None); stdout by host name."""
    from pyinfra.api import StringCommand

    def run(host):
        command = command_for(host)
        if command is None:
            return None
        ok, output = host.run_shell_command(StringCommand(command), print_output=False)
        return ok, output.stdout

    results = on_hosts(inventory_file, root, run, limit)
    return {name: (False, str(value)) if isinstance(value, Exception) else value
            for name, value in results.items() if value is not None}
