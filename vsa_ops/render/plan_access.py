"""The plan identity's files (``config.plan_access``): its key, restricted to the state reader in
plan mode; the sudo rule that lets it run exactly that as root; and the list of managed paths the
reader in plan mode keeps to. Present when the configuration names at least one key."""

from __future__ import annotations

import posixpath

from ..config.plan_access import PlanIdentity
from ..host_programs import PROGRAM_DIR
from ..manifest import Directory, File

STATE_READER = f"{PROGRAM_DIR}/state.sh"
# The only command the key runs, whatever the client asks for (sshd's forced command); sudo's rule
# allows exactly these arguments.
PLAN_COMMAND = f"sudo -n {STATE_READER} plan"
# What the reader in plan mode may look at: "d PATH" (the metadata of a folder and everything in it),
# "f PATH" (a file's digest and text too, when world-readable), "o PATH" (those of the files in it).
PLAN_PATHS = f"{PROGRAM_DIR}/plan-paths"
SUDOERS_DIR = "/etc/sudoers.d"


def sudoers_path(identity: PlanIdentity) -> str:
    # sudo skips drop-ins whose name holds a '.' or ends in '~'; account names hold neither.
    return f"{SUDOERS_DIR}/vsa-ops-{identity.user}"


def authorized_keys(identity: PlanIdentity) -> str:
    # restrict: no pty, no port, agent or X11 forwarding, no ~/.ssh/rc; command=: nothing but the reader.
    return "".join(f'restrict,command="{PLAN_COMMAND}" {key}\n' for key in identity.authorized_keys)


def sudoers(identity: PlanIdentity) -> str:
    return (f"# vsa-ops plan identity: the state reader in plan mode, as root, and nothing else.\n"
            f"Defaults:{identity.user} !requiretty, !lecture\n"
            f"{identity.user} ALL=(root) NOPASSWD: {STATE_READER} plan\n")


def plan_access(identity: PlanIdentity, files: list[File], directories: dict[str, Directory]
                ) -> tuple[list[File], list[Directory], list[tuple[str, int]]]:
    """The identity's files (the path list last: it names every other file and folder), folders and
    account, given the rest of the manifest; nothing without a key."""
    if not identity.authorized_keys:
        return [], [], []
    ssh = f"{identity.home}/.ssh"
    # root's, so that the account cannot change its own key (sshd's StrictModes accepts root's)
    own = [Directory(identity.home, 0, 0, "0755"), Directory(ssh, 0, 0, "0755")]
    own_files = [File(f"{ssh}/authorized_keys", authorized_keys(identity), 0, 0, "0644"),
                 File(sudoers_path(identity), sudoers(identity), 0, 0, "0440")]
    folders = {d.path for d in [*directories.values(), *own]}
    owned = {d.path for d in directories.values() if d.owned}
    # Folders: only the outermost (the reader takes everything inside). Files: those not directly in
    # an owned folder, whose files the reader takes as they come. So the list stays the same when a
    # domain comes or goes (a deploy aimed at a domain writes only the domain's files).
    listed = sorted({f"d {path}" for path in folders if not _inside(path, folders)}
                    | {f"o {path}" for path in owned}
                    | {f"f {path}" for path in {f.path for f in [*files, *own_files]} | {PLAN_PATHS}
                       if posixpath.dirname(path) not in owned})
    return [*own_files, File(PLAN_PATHS, "".join(f"{line}\n" for line in listed), 0, 0, "0644")], own, \
        [(identity.user, identity.uid)]


def _inside(path: str, folders: set[str]) -> bool:
    parent = posixpath.dirname(path)
    while parent != "/":
        if parent in folders:
            return True
        parent = posixpath.dirname(parent)
    return False
