"""The hub's deploy on pyinfra's @fake connector: what it sends to a host whose answers are given."""

from __future__ import annotations

from pyinfra.api import Config, Inventory, State
from pyinfra.api.connect import connect_all
from pyinfra.api.deploy import add_deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.operations import run_ops

from vsa_ops.deploys.hub import converge_hub


def fake_deploy(monkeypatch, data: dict, may_fail: bool = False):
    """Run ``converge_hub`` against ``@fake/hub`` with host ``data`` (its ``fake_responses`` answer
    the commands). Returns pyinfra's state, the host and every command sent with its arguments, in
    order. A failed host raises unless ``may_fail``."""
    inventory = Inventory((["@fake/hub"], data))
    state = State(inventory=inventory, config=Config())
    connect_all(state)
    host = next(iter(inventory))
    sent: list[tuple[str, dict]] = []
    recorded = host.connector.run_shell_command

    def record(command, **arguments):
        sent.append((str(command), arguments))
        return recorded(command, **arguments)

    monkeypatch.setattr(host.connector, "run_shell_command", record)
    add_deploy(state, converge_hub)
    try:
        run_ops(state)
    except PyinfraError:  # no host left: the one host failed
        if not may_fail:
            raise
    assert may_fail or not state.failed_hosts
    return state, host, sent
