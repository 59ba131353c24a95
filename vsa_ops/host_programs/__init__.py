"""The programs vsa-ops runs on a host: static POSIX sh files in this folder, each with its data on
stdin, so that a command's size never depends on the number of domains.

A program travels in the command itself (``sh -c`` of its text, its arguments set first): the very
first run on a new host needs nothing installed, and there is no version of it on the host to get
out of step with the controller. ``common.sh`` goes in front of every program.
"""

from __future__ import annotations

import hashlib
import shlex
from functools import cache
from importlib import resources

# Each program and the libraries put in front of it.
PROGRAMS = {"state": ("common",), "lock": ("common", "locking"), "transaction": ("common", "locking")}


@cache
def program_text(name: str) -> str:
    """The text of program ``name``: its libraries, then ``name``.sh."""
    folder = resources.files(__package__)
    shebang, _, body = folder.joinpath(f"{name}.sh").read_text().partition("\n")
    libraries = "\n".join(folder.joinpath(f"{lib}.sh").read_text() for lib in PROGRAMS[name])
    return f"{shebang}\n{libraries}\n{body}"


def program_digest(name: str) -> str:
    return hashlib.sha256(program_text(name).encode()).hexdigest()


def program_command(name: str, *args: str | int) -> str:
    """The shell command that runs program ``name`` with ``args``."""
    quoted = " ".join(shlex.quote(str(a)) for a in args)
    return f"set -- {quoted}\n{program_text(name)}"
