"""System accounts of the container user model, so bind-mounted files show their owners by name."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from ..config.accounts import PREFIX as SECRET_READER_PREFIX
from ..inventory import host_config
from .shell import argv, script


@operation()
def system_users(users: list[tuple[str, int]]):
    """Create each account (and its group, same id) that is missing by name and by uid. A secret
    reader's (``config.accounts``) refuses a group id that another group holds. The plan identity's
    (``config.plan_access``) gets a shell and its home: its key's forced command needs them.

    + users: ``(name, uid)`` pairs, from ``plan.users``

    **Example:**

    .. code:: python

        users.system_users(name="container users", users=[("loki", 10001)])
    """
    if not users:
        host.noop("every container user exists")
        return
    lines, identity = [], host_config(host).plan_identity
    for name, uid in users:
        if name.startswith(SECRET_READER_PREFIX):
            # A secret reader's group must be ours: never join a group of another name.
            lines.append(f"g=$(getent group {uid} | cut -d: -f1); if [ -n \"$g\" ] && [ \"$g\" != {argv(name)} ]; "
                         f"then echo \"vsa-ops: secret reader {name}: gid {uid} belongs to group $g; choose a free id "
                         f"in vsa.secret_readers\" >&2; exit 1; fi")
        lines.append(f"getent group {uid} >/dev/null || groupadd --system --gid {uid} {argv(name)}")
        if name == identity.user:
            # sshd runs the key's forced command with the account's shell, so it needs one; "*" is no
            # password at all, yet unlike useradd's "!" not a locked account, which sshd refuses.
            lines.append(f"useradd --system --uid {uid} --gid {uid} --no-create-home --home-dir "
                         f"{argv(identity.home)} --shell /bin/sh --password '*' {argv(name)}")
            continue
        lines.append(f"useradd --system --uid {uid} --gid {uid} --no-create-home --home-dir /nonexistent "
                     f"--shell /usr/sbin/nologin {argv(name)}")
    yield StringCommand(script(lines))
