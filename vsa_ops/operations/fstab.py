"""/etc/fstab entries by filesystem LABEL."""

from __future__ import annotations

from io import BytesIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from ..plan import FstabChange
from .shell import argv, script

FSTAB = "/etc/fstab"


@operation()
def entries(change: FstabChange | None, fstab: str = FSTAB):
    """Install the planned fstab: back up the old file, check the new one with ``findmnt --verify``
    (parse errors and bad options fail; a source whose disk is absent is only reported), replace it
    atomically, and mount the entries whose device exists and whose mount point is free.

    + change: ``plan.fstab`` (None: nothing to do)
    + fstab: the file to manage

    **Example:**

    .. code:: python

        fstab.entries(name="fstab by LABEL", change=plan.fstab)
    """
    if change is None:
        host.noop("fstab already has every entry")
        return
    candidate = f"{fstab}.vsa-new"
    yield FileUploadCommand(BytesIO(change.content.encode()), candidate)
    lines = [
        f"new={argv(candidate)}; old={argv(fstab)}",
        "report=$(findmnt --verify --tab-file \"$new\" 2>&1 || true)",
        "bad=$(printf '%s\\n' \"$report\" | grep -E '\\[E\\]|parse error' "
        "| grep -v -e 'unreachable on boot required' -e '^0 parse errors' || true)",
        "if [ -n \"$bad\" ]; then rm -f \"$new\"; echo \"vsa-ops: fstab check failed: $bad\" >&2; exit 1; fi",
        "[ -e \"$old\" ] && cp -p \"$old\" \"$old.vsa-$(date +%Y%m%dT%H%M%S)\"",
        "chmod 0644 \"$new\"; mv -f \"$new\" \"$old\"",
    ]
    for mountpoint in change.mount:
        lines.append(f"mkdir -p {argv(mountpoint)} && mount {argv(mountpoint)}")
    yield StringCommand(script(lines))
