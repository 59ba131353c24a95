"""Plan a connected host: its state in one command (the state read), then the pure plan against its
manifest. The deploy applies this plan; `vsa-ops plan` and `drift` show it. One code path for both."""

from __future__ import annotations

import uuid

from .facts import HostState
from .host_manifest import host_manifest
from .inventory import host_config
from .manifest import Manifest
from .plan import Plan, make_plan, managed_paths, owned_directories
from .state_read import HostSnapshot, PathState, state_request

# Files holding secrets are hashed after this, new for every process (see state_read.hash_command):
# no bare digest of a password ever crosses the wire or reaches a log.
SALT = uuid.uuid4().hex


def read_state(host, manifest: Manifest, audit_log: str | None = None) -> HostSnapshot:
    paths, files, secret_files = managed_paths(manifest)
    state = host.get_fact(HostState, salt=SALT, _stdin=state_request(paths, files, owned_directories(manifest),
                                                                      secret_files, audit_log))
    state.salt = SALT
    return unsettled(state)


def unsettled(state: HostSnapshot) -> HostSnapshot:
    """Where a transaction was cut short, the next run undoes it first (under the lock, see
    host_programs/lock.sh): what it touched counts as changed, so this run's plan rewrites it and
    reloads what reads it. Never "nothing to do" over a half-applied state."""
    if state.unfinished and not state.unfinished_committed:
        for path in state.unfinished_paths:
            old = state.paths.get(path)
            state.paths[path] = PathState("file", -1, -1, "0000", None) if old is None else PathState(
                old.kind, -1, -1, "0000", None)
            state.owned_files.add(path)
    return state


def plan_host(host, manifest: Manifest | None = None, force_fstab: bool = False
              ) -> tuple[Manifest, HostSnapshot, Plan]:
    """Read ``host``'s state in one command and plan against ``manifest`` (rendered when None)."""
    manifest = manifest or host_manifest(host, None)
    state = read_state(host, manifest, host_config(host).audit.jsonl)
    if {d.name for d in manifest.domains if d.tls} - state.certificates:
        # a vhost awaits its certificate: until issuance it is served over HTTP only
        manifest = host_manifest(host, state.certificates)
    return manifest, state, make_plan(manifest, state, force_fstab=force_fstab)
