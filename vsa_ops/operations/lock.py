"""A host-level run lock: a directory created atomically, with a file naming its holder.

Two vsa-ops runs against one host never interleave: the second waits up to ``wait`` seconds, then
fails naming the holder. A lock whose holder died (same controller, process gone) or that is older
than ``ttl`` seconds is taken over, so a killed run never blocks the next one for long.

A ``Hold`` is the lock as shell lines: the operations below run them on their own, and a run whose
only work is one files-and-stacks transaction runs them inside it (``stacks.activate(lock=...)``),
saving two round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api import StringCommand, operation

from ..state_read import LOCK_DIR, fingerprint_command
from .shell import argv, script


@dataclass(frozen=True)
class Hold:
    """Taking the run lock, then checking that the host is still as the plan saw it.

    + owner: who takes it: ``run-id controller pid epoch user``
    + fingerprint: digest of the managed state the plan was made from (``plan.fingerprint``)
    + paths, files, secret_files, salt: what that digest covers, as the state read hashed it
    + stale_owner: a holder known to be dead; taken over if it still holds the lock
    + wait: seconds to wait for another run to finish
    + ttl: seconds after which any holder counts as dead
    """

    owner: str
    fingerprint: str
    paths: tuple[str, ...]
    files: tuple[str, ...]
    secret_files: tuple[str, ...] = ()
    salt: str = ""
    stale_owner: str = ""
    wait: int = 60
    ttl: int = 900

    def acquire_lines(self) -> list[str]:
        return [
            f"lock={argv(LOCK_DIR)}; owner={argv(self.owner)}; stale={argv(self.stale_owner)}; ttl={int(self.ttl)}",
            f"deadline=$(( $(date +%s) + {int(self.wait)} ))",
            "until mkdir \"$lock\" 2>/dev/null; do",
            "  holder=$(cat \"$lock/owner\" 2>/dev/null || true)",
            "  since=$(echo \"$holder\" | cut -d' ' -f4)",
            "  if [ -n \"$stale\" ] && [ \"$holder\" = \"$stale\" ] || "
            "{ [ -n \"$since\" ] && [ $(( $(date +%s) - since )) -gt \"$ttl\" ]; }; then",
            "    rm -rf \"$lock\"; continue",
            "  fi",
            "  if [ \"$(date +%s)\" -ge \"$deadline\" ]; then",
            "    echo \"vsa-ops: this host is locked by another run: ${holder:-unknown} (lock $lock)\" >&2; exit 75",
            "  fi",
            "  sleep 1",
            "done",
            "echo \"$owner\" > \"$lock/owner\"",
            f"now=$({fingerprint_command(list(self.paths), list(self.files), list(self.secret_files), self.salt)})",
            f"if [ \"$now\" != {argv(self.fingerprint)} ]; then",
            "  rm -rf \"$lock\"",
            "  echo \"vsa-ops: the host changed since this run read it (another run?); nothing was applied, run again "
            "($now)\" >&2",
            "  exit 75",
            "fi",
        ]

    def release_line(self) -> str:
        return release_line(self.owner)


def release_line(owner: str) -> str:
    """Removes the lock if ``owner`` still holds it."""
    return (f"if [ \"$(cat {argv(LOCK_DIR + '/owner')} 2>/dev/null)\" = {argv(owner)} ]; "
            f"then rm -rf {argv(LOCK_DIR)}; fi")


@operation()
def acquire(hold: Hold):
    """Take the run lock, then check the host is still as the plan saw it (see ``Hold``).

    **Example:**

    .. code:: python

        paths, files, secret_files = managed_paths(manifest)
        lock.acquire(name="take the vsa-ops lock", hold=lock.Hold(
            owner="r1 laptop 4242 1764170000 alice", fingerprint=plan.fingerprint,
            paths=tuple(paths), files=tuple(files)))
    """
    yield StringCommand(script(hold.acquire_lines()))


@operation()
def release(owner: str):
    """Give the run lock back, if ``owner`` still holds it.

    + owner: the holder string of the ``Hold``
    """
    yield StringCommand(script([release_line(owner)]))
