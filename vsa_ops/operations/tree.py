"""The directory tree with owners and modes, in one command for the whole tree."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from ..plan import DirectoryChange
from .shell import argv, script


@operation()
def directories(changes: list[DirectoryChange]):
    """Create missing directories and fix owners and modes, parents first.

    + changes: ``plan.directories``

    **Example:**

    .. code:: python

        tree.directories(name="directory tree", changes=plan.directories)
    """
    if not changes:
        host.noop("every directory has its owner and mode")
        return
    lines = []
    for change in sorted(changes, key=lambda c: c.directory.path):
        d = change.directory
        lines.append(f"mkdir -p {argv(d.path)} && chown {d.owner}:{d.group} {argv(d.path)} "
                     f"&& chmod {d.mode} {argv(d.path)}")
    yield StringCommand(script(lines))
