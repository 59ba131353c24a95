"""The state read: what a host has of everything a manifest manages, in ONE remote command.

pyinfra runs one command per fact and caches nothing, so reading each file separately would cost
one round trip per file. This fact asks for everything at once: owner, group, mode and SHA-256 of
the managed paths, /etc/fstab, the filesystem labels present, accounts, whether Docker runs and
where its compose plugin is, its networks, images and compose containers, the issued certificates,
the run lock, an unfinished transaction's journal, and the last line of the files asked for: the audit
log's (so that the run's audit record needs no read of its own) and the last deploy's result (so that a
deploy that changes nothing still publishes a success that follows a failure).

The program is host_programs/state.sh; the paths travel on its stdin, so the command stays a few KB
for any number of domains, and its output is NUL-terminated records (gzip, base64) that no file name
can forge.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .config.storage import CERTIFICATES
from .errors import VsaError
from .host_programs import program_command

# Tools vsa-ops relies on at the host, by the Debian package that brings each (state.sh checks these).
HOST_COMMANDS = {"sqlite3": "sqlite3", "logrotate": "logrotate", "findmnt": "util-linux", "flock": "util-linux"}
# Root-only folder of vsa-ops' own state on a host (common.sh's VSA_STATE): run lock, journal, log.
STATE_DIR = "/var/lib/vsa-ops"
LOCK_DIR = f"{STATE_DIR}/lock"


class StateReadError(VsaError):
    pass


@dataclass(frozen=True)
class PathState:
    kind: str  # "file", "directory", "link", "other"
    owner: int
    group: int
    mode: str
    sha256: str | None = None


@dataclass
class HostSnapshot:
    paths: dict[str, PathState] = field(default_factory=dict)
    # Files found directly inside the directories vsa-ops owns.
    owned_files: set[str] = field(default_factory=set)
    fstab: str = ""
    labels: set[str] = field(default_factory=set)
    mounts: dict[str, str] = field(default_factory=dict)
    # LABEL=... and UUID=... of the device mounted at / (an fstab line for / may only name one of these)
    root_sources: set[str] = field(default_factory=set)
    users: dict[str, int] = field(default_factory=dict)
    uids: set[int] = field(default_factory=set)
    docker_running: bool = False
    compose_plugin: str = ""  # path of the compose v2 CLI plugin; "" when missing
    networks: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    # (compose project, service) -> container state ("running", "exited", ...)
    containers: dict[tuple[str, str], str] = field(default_factory=dict)
    certificates: set[str] = field(default_factory=set)
    lock: str = ""
    commands: set[str] = field(default_factory=set)
    fingerprint: str = ""
    salt: str = ""  # what secret files were hashed after (see hash_command)
    # Path -> its last line, newline included (b"": no file or an empty one), for the files asked for
    last_lines: dict[str, bytes] = field(default_factory=dict)
    # A transaction that did not finish (its shell was killed where no trap runs): its run id, the
    # paths it may have changed, and whether it had committed (then it is finished, else undone).
    unfinished: str = ""
    unfinished_paths: set[str] = field(default_factory=set)
    unfinished_committed: bool = False
    # Read by the plan identity (state.sh's plan mode): files it may not read have digest "-".
    read_only: bool = False
    # Files whose content a plan did not compare (a secret, or unreadable to the plan identity): set
    # by planning, which counts them as matching; owner, group and mode are still compared.
    not_compared: set[str] = field(default_factory=set)


def fingerprint_request(paths: list[str], files: list[str], secret_files: list[str] = ()) -> str:
    """What the fingerprint covers, one "KIND PATH" line each: d (metadata), f (and digest), s (and
    digest after the salt). The state read and the lock read exactly these (common.sh)."""
    hashed, secret = set(files), set(secret_files)
    return "".join(f"{'s' if p in secret else 'f' if p in hashed else 'd'} {p}\n" for p in paths)


def state_request(paths: list[str], files: list[str], owned: list[str] | None = None,
                  secret_files: list[str] = (), last_lines: Iterable[str] = ()) -> str:
    """What the state read takes on stdin: one "KIND PATH" line per path (see state.sh)."""
    lines = [fingerprint_request(paths, files, secret_files).rstrip("\n")]
    lines += [f"o {p}" for p in owned or []] + [f"c {CERTIFICATES}"] + [f"l {p}" for p in last_lines]
    return "\n".join(lines) + "\n"


def state_command(salt: str = "", root: str = "/") -> str:
    """The state read's command: the program, with no data in it (that goes to stdin)."""
    return program_command("state", root, salt)


def text_request(paths: list[str]) -> str:
    """The state read's request for the current text of ``paths`` (only these come back)."""
    return "".join(f"t {p}\n" for p in paths)


def parse_texts(text: str) -> dict[str, str]:
    """Path -> text, from the state read's answer to ``text_request``."""
    found = {}
    for tag, value in records(text):
        if tag == "text":
            encoded, _, path = value.partition(" ")
            found["/" + path] = base64.b64decode(encoded).decode("utf-8", "surrogateescape")
    return found


def records(text: str) -> list[tuple[str, str]]:
    """(tag, value) for each record of a host program's output (gzip, base64, NUL-terminated)."""
    try:
        data = gzip.decompress(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, OSError, EOFError, zlib.error) as error:
        raise StateReadError(f"the state read's output is not what vsa-ops sent ({error}): "
                             f"{text.strip()[:120]!r}") from None
    found = []
    for record in data.split(b"\0")[:-1]:
        tag, _, value = record.decode("utf-8", "surrogateescape").partition(" ")
        found.append((tag, value))
    if not found or found[-1][0] != "end":
        raise StateReadError("the state read's output stops short (the host closed the connection?)")
    return found


KINDS = {"regular file": "file", "regular empty file": "file", "directory": "directory", "symbolic link": "link"}


def parse_host_state(lines: list[str]) -> HostSnapshot:
    state = HostSnapshot()
    hashes, stats = {}, []
    for tag, value in records("".join(lines)):
        if tag == "stat":
            stats.append(value)
        elif tag == "sha":
            digest, _, path = value.partition("  ")
            hashes["/" + path] = digest
        elif tag == "fstab":
            state.fstab = base64.b64decode(value).decode("utf-8", "surrogateescape")
        elif tag == "fingerprint":
            state.fingerprint = value
        elif tag == "owned":
            state.owned_files.add("/" + value)
        elif tag == "label":
            state.labels.add(value)
        elif tag == "mount":
            target, _, source = value.partition(" ")
            state.mounts[target] = source
        elif tag == "root":
            kind, _, name = value.partition("=")
            if kind in ("label", "uuid") and name:
                state.root_sources.add(f"{kind.upper()}={name}")
        elif tag == "user":
            name, _, uid = value.partition(":")
            if uid.isdigit():
                state.users[name] = int(uid)
        elif tag == "docker":
            state.docker_running = True
        elif tag == "network":
            state.networks.add(value)
        elif tag == "image":
            state.images.add(value)
        elif tag == "container":
            project, service, status = (value.split("|") + ["", "", ""])[:3]
            if project and service:
                state.containers[(project, service)] = status
        elif tag == "compose":
            state.compose_plugin = value
        elif tag == "certificate":
            state.certificates.add(value)
        elif tag == "lock":
            state.lock = value.strip()
        elif tag == "journal":
            _read_journal(state, base64.b64decode(value).decode("utf-8", "surrogateescape"))
        elif tag == "command":
            state.commands.add(value)
        elif tag == "last":
            encoded, _, path = value.partition(" ")
            state.last_lines["/" + path.lstrip("/")] = base64.b64decode(encoded)
        elif tag == "readonly":
            state.read_only = True
    for value in stats:
        kind, owner, group, mode, path = value.split("|", 4)
        path = "/" + path
        state.paths[path] = PathState(KINDS.get(kind, "other"), int(owner), int(group), mode.rjust(4, "0"),
                                      hashes.get(path))
    state.uids = set(state.users.values())
    return state


def _read_journal(state: HostSnapshot, text: str) -> None:
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "run":
            state.unfinished = rest
        elif kind == "commit":
            state.unfinished_committed = True
        elif kind in ("backup", "new", "removed"):
            state.unfinished_paths.add("/" + rest)
        elif kind == "meta":  # meta UID:GID MODE PATH
            state.unfinished_paths.add("/" + rest.split(" ", 2)[-1])
