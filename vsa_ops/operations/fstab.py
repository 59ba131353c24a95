"""/etc/fstab entries by filesystem LABEL."""

from __future__ import annotations

import base64

from pyinfra import host
from pyinfra.api import StringCommand, operation

from ..plan import FstabChange
from .shell import argv, script

FSTAB = "/etc/fstab"

# `findmnt --verify` of one table as "target: message" lines, one per error ([E]) and per parse error,
# then "summary" when findmnt got to its summary line (it can die of a signal before it on a bad table).
VERIFY = ("verify() { LC_ALL=C findmnt --verify --tab-file \"$1\" 2>&1 | awk '"
          "/parse error/ && !/ parse errors?,/ { print \"parse error \" ++parse } "
          "/^[^ ]/ { target = $0 } "
          "/^ *\\[E\\]/ { sub(/^ *\\[E\\] */, \"\"); print target \": \" $0 } "
          "/^[0-9]+ parse errors?, / || /^Success/ { print \"summary\" }'; }")


@operation()
def entries(change: FstabChange | None, fstab: str = FSTAB):
    """Install the planned fstab: check the new table with ``findmnt --verify`` and refuse it if it
    has any error (or parse error) the current table does not already have, naming each; keep the
    old file as a hard link, replace it atomically, and mount the entries whose device exists and
    whose mount point is free. Errors the current table already had are printed, not hidden.

    + change: ``plan.fstab`` (None: nothing to do)
    + fstab: the file to manage

    **Example:**

    .. code:: python

        fstab.entries(name="fstab by LABEL", change=plan.fstab)
    """
    if change is None:
        host.noop("fstab already has every entry")
        return
    # base64: stdin travels as text lines, and the table's bytes must arrive exactly
    yield StringCommand(install_script(fstab, change.mount), _stdin=base64.b64encode(change.content.encode()).decode())


def install_script(fstab: str, mount: tuple[str, ...] = ()) -> str:
    """The host's side of ``entries``: the new table (base64 on stdin) staged under a fresh mktemp
    name beside ``fstab`` (the rename stays atomic) and removed on every exit path; checked, installed
    as ``fstab``; then ``mount`` mounted."""
    lines = [
        f"old={argv(fstab)}",
        "new=''; checked=''",
        "trap 'rm -rf ${new:+\"$new\"} ${checked:+\"$checked\"}' EXIT",
        "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 141' PIPE",
        "new=$(mktemp \"$old.vsa-new.XXXXXX\") && base64 -d > \"$new\" || "
        "{ echo \"vsa-ops: cannot stage the new $old (a full disk?); $old left as it was\" >&2; exit 1; }",
        "checked=$(mktemp -d)",
        VERIFY,
        "if [ -e \"$old\" ]; then verify \"$old\" > \"$checked/before\"; else : > \"$checked/before\"; fi",
        "verify \"$new\" > \"$checked/after\"",
        "if ! grep -qx summary \"$checked/after\"; then "
        "echo 'vsa-ops: fstab check failed: findmnt --verify gave no verdict on the new table' >&2; exit 1; fi",
        "bad=$(grep -vxF -f \"$checked/before\" \"$checked/after\" | head -n 5 | paste -sd ';' -)",
        "if [ -n \"$bad\" ]; then echo \"vsa-ops: fstab check failed, $old left as it was: $bad\" >&2; exit 1; fi",
        "known=$(grep -vx summary \"$checked/before\" | head -n 5 | paste -sd ';' -)",
        "[ -z \"$known\" ] || echo \"vsa-ops: $old already had (kept as it was): $known\" >&2",
        "if [ -e \"$old\" ]; then ln -f \"$old\" \"$old.vsa-$(date +%Y%m%dT%H%M%S)\"; fi",
        "chmod 0644 \"$new\"; mv -fT \"$new\" \"$old\"",
    ]
    for mountpoint in mount:
        lines.append(f"mkdir -p {argv(mountpoint)} && mount {argv(mountpoint)}")
    return script(lines)
