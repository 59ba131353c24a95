"""The state read as a pyinfra fact: pyinfra runs its one command and hands the output to its parser."""

from __future__ import annotations

from pyinfra.api import FactBase

from ..state_read import HostSnapshot, parse_host_state, state_script


class HostState(FactBase):
    """Everything vsa-ops manages on the host, in one command.

    + paths: directories and files whose owner, group and mode are wanted
    + files: the subset of paths whose content hash is wanted
    + owned: directories whose every file vsa-ops manages (their contents are listed)
    + secret_files, salt: files holding secrets, hashed after the salt
    + audit_log: the audit JSONL whose last line is wanted
    """

    def command(self, paths: list[str], files: list[str], owned: list[str] | None = None,
                secret_files: list[str] | None = None, salt: str = "", audit_log: str | None = None) -> str:
        return state_script(paths, files, owned, secret_files or [], salt, audit_log)

    def process(self, output: list[str]) -> HostSnapshot:
        return parse_host_state(output)

    @staticmethod
    def default() -> HostSnapshot:
        return HostSnapshot()
