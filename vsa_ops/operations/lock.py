"""The host-level run lock (host_programs/lock.sh): a folder whose owner file names the holding
run, changed only under flock(1) on the host, aged by the host's clock.

Two vsa-ops runs against one host never interleave: the second waits up to ``wait`` seconds, then
fails naming the holder. A holder older than ``ttl`` seconds (the holder refreshes it while it
works) or known dead (same controller, process gone) is taken over, atomically. Taking the lock
also finishes or undoes a transaction an earlier run left unfinished (its journal).

A run whose only work is one files-and-stacks transaction takes the lock inside it
(``stacks.activate(lock=...)``), saving two round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api import StringCommand, operation

from ..host_programs import program_command
from ..state_read import fingerprint_request


@dataclass(frozen=True)
class Hold:
    """Taking the run lock, then checking that the host is still as the plan saw it.

    + owner: who takes it: ``run-id controller pid epoch user`` (the run id identifies the holder)
    + fingerprint: digest of the managed state the plan was made from (``plan.fingerprint``)
    + paths, files, secret_files, salt: what that digest covers, as the state read hashed it
    + stale_owner: a holder known to be dead; taken over if it still holds the lock
    + wait: seconds to wait for another run to finish
    + ttl: seconds without a refresh after which a holder counts as dead
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

    @property
    def run(self) -> str:
        return self.owner.split(" ", 1)[0]

    def take_arguments(self) -> tuple:
        """OWNER WAIT STALE DEAD-HOLDER FINGERPRINT SALT, as lock.sh and transaction.sh take them."""
        return self.owner, int(self.wait), int(self.ttl), self.stale_owner, self.fingerprint, self.salt

    def request(self) -> str:
        """What the fingerprint covers, for the program's stdin."""
        return fingerprint_request(list(self.paths), list(self.files), list(self.secret_files))


def release_command(run: str, root: str = "/") -> str:
    """Removes the lock if run ``run`` still holds it."""
    return program_command("lock", root, "release", run)


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
    yield StringCommand(program_command("lock", "/", "take", hold.run, *hold.take_arguments()),
                        _stdin=hold.request())


@operation()
def release(owner: str):
    """Give the run lock back, if ``owner`` (the holder string of the ``Hold``) still holds it."""
    yield StringCommand(release_command(owner.split(" ", 1)[0]))
