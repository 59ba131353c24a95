"""The state read as a pyinfra fact: pyinfra runs its one command and hands the output to its parser.
The paths to read go to the command's stdin (``_stdin=state_request(...)``), not into the command."""

from __future__ import annotations

from pyinfra.api import FactBase

from ..state_read import HostSnapshot, parse_host_state, state_command


class HostState(FactBase):
    """Everything vsa-ops manages on the host, in one command.

    + salt: what files holding secrets are hashed after
    + root: the host's root folder ("/"; a scratch folder in tests)
    + the request on stdin: ``state_read.state_request(paths, files, owned, secret_files, audit_log)``
    """

    def command(self, salt: str = "", root: str = "/") -> str:
        return state_command(salt, root)

    def process(self, output: list[str]) -> HostSnapshot:
        return parse_host_state(output)

    @staticmethod
    def default() -> HostSnapshot:
        return HostSnapshot()
