"""Work on inventory hosts from the vsa-ops command, outside a deploy, over pyinfra's own connectors
(so the inventory's SSH settings apply): read-only commands, facts and audit appends. One way to
connect for every command: hosts in parallel, and a host that cannot be reached is reported by
name, never raised."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..inventory import limited
from .inventory_files import load_inventory

RunCommand = Callable[[str], tuple[bool, str]]
# name -> (host, run(command) -> (ok, stdout)), or why the host is not available
Sessions = dict[str, "tuple[Any, RunCommand] | str"]


def sessions_of(state, hosts: Iterable, errors: dict[str, str] | None = None) -> Sessions:
    """Sessions over hosts already connected in ``state``."""
    from pyinfra.api import StringCommand
    from pyinfra.context import ctx_host, ctx_state

    def runner(host) -> RunCommand:
        def run(command: str) -> tuple[bool, str]:
            with ctx_state.use(state), ctx_host.use(host):
                ok, output = host.run_shell_command(StringCommand(command), print_output=False)
            return ok, output.stdout
        return run

    return {h.name: (h, runner(h)) if h.connected else (errors or {}).get(h.name, "could not connect")
            for h in hosts}


def side_by_side(*steps: Callable[[], object]) -> None:
    """Run ``steps`` at once, each in a greenlet of its own: independent remote commands on open
    connections (SSH multiplexes them) then cost one round trip of waiting instead of one each. Every
    step runs to its end; the first error is raised after, any other added to its notes."""
    import gevent

    def kept(step: Callable[[], object]) -> Exception | None:
        # returned, not raised: gevent prints the traceback of every greenlet that dies of an error,
        # an expected one (a VsaError, one line from the CLI) included
        try:
            step()
        except Exception as error:
            return error
        return None

    greenlets = [gevent.spawn(kept, step) for step in steps]
    gevent.joinall(greenlets)
    errors = [error for error in (greenlet.get() for greenlet in greenlets) if error is not None]
    if errors:
        for other in errors[1:]:  # not lost: a traceback shows them too
            errors[0].add_note(f"also: {type(other).__name__}: {other}")
        raise errors[0]


@contextmanager
def connected(inventory_file: Path, root: Path, names: Iterable[str] | None = None,
              limit: str | None = None) -> Iterator[Sessions]:
    """Sessions to the hosts named (all when None; or those of ``limit``, a host or group), kept
    open for the block. Named hosts missing from the inventory get "not in the inventory"."""
    from . import output
    from .gevent_patch import patch

    patch()
    output.install()
    from pyinfra.api import Config, State
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.context import ctx_state

    inventory = load_inventory(inventory_file, root)
    wanted = None if names is None else set(names)
    hosts = [h for h in limited(inventory, [limit] if limit else None) if wanted is None or h.name in wanted]
    state = State(inventory=inventory, config=Config())
    errors: dict[str, str] = {}

    def connect(host):
        try:
            host.connect(show_errors=False, raise_exceptions=True)
        except PyinfraError as error:
            errors[host.name] = f"could not connect: {host_key_error(host) if is_host_key_error(error) else error}"

    with ctx_state.use(state):
        for greenlet in [state.pool.spawn(connect, h) for h in hosts]:
            greenlet.get()
        for host in hosts:
            if host.connected:
                state.activate_host(host)
        sessions = {name: "not in the inventory" for name in (wanted or set()) - {h.name for h in hosts}}
        sessions.update(sessions_of(state, hosts, errors))
        try:
            yield sessions
        finally:
            for host in hosts:
                if host.connected:
                    host.disconnect()


def is_host_key_error(error: Exception) -> bool:
    """pyinfra's SSH connector's error for a key that differs from the known one (BadHostKeyException)."""
    return str(error).startswith("SSH host key error")


def host_key_error(host) -> str:
    """One line for a changed host key: which host, which key file; never accepted by vsa-ops."""
    data = host.data
    port = int(data.get("ssh_port") or 22)
    address = data.get("ssh_hostname") or host.name
    shown = address if port == 22 else f"[{address}]:{port}"
    known = data.get("ssh_known_hosts_file") or "~/.ssh/known_hosts"
    return (f"the SSH host key of {shown} differs from the one in {known}: refused (a rebuilt server "
            f"needs its new key pinned, see the README's \"Host keys\"; otherwise someone may be in between)")


def on_hosts(inventory_file: Path, root: Path, work: Callable[[Any], Any], limit: str | None = None) -> dict:
    """``work(host)`` for each connected host, with pyinfra's host context set (facts work); a host
    that could not be reached gets a ConnectionError instead."""
    from pyinfra.context import ctx_host

    results = {}
    with connected(inventory_file, root, limit=limit) as sessions:
        for name, session in sessions.items():
            if isinstance(session, str):
                results[name] = ConnectionError(session)  # why; callers put the host's name before it
                continue
            with ctx_host.use(session[0]):
                results[name] = work(session[0])
    return results


def run_on_hosts(inventory_file: Path, root: Path, command_for: Callable[[object], str | None],
                 limit: str | None = None) -> dict[str, tuple[bool, str]]:
    """Run ``command_for(host)`` on each host (skipped where it returns None); stdout by host name,
    or (False, why) for a host that could not be reached."""
    results = {}
    with connected(inventory_file, root, limit=limit) as sessions:
        for name, session in sessions.items():
            if isinstance(session, str):
                results[name] = (False, session)
                continue
            host, run = session
            command = command_for(host)
            if command is not None:
                results[name] = run(command)
    return results
