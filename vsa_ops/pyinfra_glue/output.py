"""Where pyinfra's and paramiko's log lines go when vsa-ops runs pyinfra inside its own process:
results are the commands' own stdout, these are diagnostics, so they go to stderr, each line whole
(one write per line), never through logging's last-resort handler. pyinfra's progress spinner
redraws one terminal line with ``\\r`` and leaves its clear-line escape in stderr's buffer, so what
is printed next can land on the spinner's line: it is off, and on a terminal each step line of long
work carries the time since it began instead (CI logs stay as they were)."""

from __future__ import annotations

import logging
import sys
import time

# What pyinfra's SSH connector logs, as four warnings, before it raises its own error about a
# changed host key: the error alone names the host (connections.py words it for the operator).
_HOST_KEY_NOTES = ("WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!", "Someone could be eavesdropping",
                   "If this is expected, you can remove the bad key", "    ssh-keygen -R ")


class _WholeLines(logging.Handler):
    def emit(self, record):
        try:
            text = self.format(record)
        except Exception:  # logging's own contract: a broken record is reported, never raised
            self.handleError(record)
            return
        sys.stderr.write("".join(f"{line}\n" for line in text.splitlines() or [""]))
        sys.stderr.flush()


class _WithoutHostKeyNotes(logging.Filter):
    def filter(self, record):
        if str(record.msg).startswith("Failed to load host keys from") and len(record.args or ()) == 2:
            # A known_hosts file that does not exist yet (a new machine) holds no keys: nothing failed.
            return not isinstance(record.args[1], FileNotFoundError)
        return not str(record.msg).startswith(_HOST_KEY_NOTES)


_installed = False


def install() -> None:
    """Once per process: pyinfra's spinner off, its host-key notes dropped, and warnings of pyinfra
    and paramiko outside a deploy (where the runner's own handler takes pyinfra's lines) to stderr
    as whole lines instead of logging's last-resort handler."""
    global _installed
    if _installed:
        return
    import pyinfra.progress
    from pyinfra import logger

    pyinfra.progress.IS_TTY = False
    logger.addFilter(_WithoutHostKeyNotes())
    root = logging.getLogger()
    if not root.handlers:  # the root's: inside a deploy pyinfra's logger stops propagating to it
        root.addHandler(_WholeLines(logging.WARNING))
    _installed = True


class Elapsed:
    """The time since long work began, added to its step lines (pyinfra's ``-->`` headers: connecting,
    preparing, each operation as it starts) when stderr is a terminal; CI logs stay as they were."""

    def __init__(self, show: bool | None = None):
        self.start = time.monotonic()
        self.show = sys.stderr.isatty() if show is None else show

    def mark(self, line: str) -> str:
        if not self.show or not line.lstrip().startswith("-->"):
            return line
        return f"{line.rstrip()} ({time.monotonic() - self.start:.1f} s)"
