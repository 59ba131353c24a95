"""The programs vsa-ops runs on a host: static POSIX sh files in this folder, each with its data on
stdin, so that a command's size never depends on the number of domains.

A program travels in the command itself (``sh -c`` of its text, its arguments set first): the very
first run on a new host needs nothing installed, and no older copy on the host can be out of step
with the controller. The deploy also installs each, root-owned 0755, under ``PROGRAM_DIR`` (files
of every manifest, so a changed program is replaced like any file), for what runs them there (a
forced command of a restricted SSH key). ``common.sh`` goes in front of every program.
"""

from __future__ import annotations

import hashlib
import shlex
from functools import cache
from importlib import resources

from ..manifest import File

# Each program and the libraries put in front of it.
PROGRAM_DIR = "/usr/local/lib/vsa-ops"
PROGRAMS = {"state": ("common",), "lock": ("common", "locking"), "transaction": ("common", "locking")}
PROGRAMS["shipper_cutover"] = ("common",)  # a swap of log shipper (vsa_ops/operations/shipper.py)
PROGRAMS["audit_append"] = ()  # the audit trail's compare-and-append (vsa_ops/audit/host_scripts.py)
PROGRAMS["reload"] = ("common",)  # a reload by signal that returns once it took effect (reload_command)
# How long a reload by signal may take to start new workers (NGINX parses every vhost first).
RELOAD_SECONDS = 120


@cache
def program_text(name: str) -> str:
    """The text of program ``name``: ``name``.sh with its libraries after its header comment."""
    folder = resources.files(__package__)
    lines = folder.joinpath(f"{name}.sh").read_text().splitlines(keepends=True)
    # its own header comment first: what the program is shows at the start of its `ps` line
    header = next(index for index, line in enumerate(lines) if not line.startswith("#"))
    libraries = "\n".join(folder.joinpath(f"{lib}.sh").read_text() for lib in PROGRAMS[name])
    return "".join(lines[:header]) + libraries + "\n" + "".join(lines[header:])


def program_digest(name: str) -> str:
    return hashlib.sha256(program_text(name).encode()).hexdigest()


def program_command(name: str, *args: str | int) -> str:
    """The shell command that runs program ``name`` with ``args``."""
    quoted = " ".join(shlex.quote(str(a)) for a in args)
    return f"set -- {quoted}\n{program_text(name)}"


def reload_command(container: str, signal: str, command: tuple[str, ...] | list[str]) -> str:
    """The host's command that makes running ``container`` read its changed configuration: ``signal``
    to its main process, returning once that took effect (reload.sh), or else ``command`` run inside it.
    A subshell: it composes with ``&&`` like one command, and its ``exit`` ends only itself."""
    if signal:
        return f"(\n{program_command('reload', '/', container, signal, RELOAD_SECONDS)}\n)"
    return shlex.join(["docker", "exec", container, *command])


def installed_programs() -> list[File]:
    """The programs as the files a host gets: ``PROGRAM_DIR/NAME.sh``, root-owned, 0755."""
    return [File(f"{PROGRAM_DIR}/{name}.sh", program_text(name), 0, 0, "0755") for name in PROGRAMS]
