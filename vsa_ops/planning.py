"""Plan a connected host: its state in one command (the state read), then the pure plan against its
manifest. The deploy applies this plan; `vsa-ops plan` and `drift` show it. One code path for both.

A review (``plan``, ``drift``) also works without the project's secrets and as the plan identity: a
file whose content depends on a secret the controller lacks, or that the plan identity may not read,
is "not compared" (its owner, group and mode still are). A deploy needs both, and refuses a state
read the plan identity answered."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace

from . import metrics
from .config import HubConfig
from .facts import HostState
from .host_manifest import host_manifest
from .inventory import host_config
from .manifest import Manifest
from .plan import Plan, content_hash, make_plan, managed_paths, owned_directories
from .plan_identity import PlanIdentityError
from .render import RenderError
from .state_read import HostSnapshot, PathState, state_request

# Files holding secrets are hashed after this, new for every process (see state_read.hash_command):
# no bare digest of a password ever crosses the wire or reaches a log.
SALT = uuid.uuid4().hex
# The digest state.sh's plan mode gives a file it does not hash.
UNREAD = "-"


def read_state(host, manifest: Manifest, last_lines: Iterable[str] = ()) -> HostSnapshot:
    paths, files, secret_files = managed_paths(manifest)
    state = host.get_fact(HostState, salt=SALT, _stdin=state_request(paths, files, owned_directories(manifest),
                                                                      secret_files, last_lines))
    state.salt = SALT
    return unsettled(state)


def deploy_last_lines(config: HubConfig) -> tuple[str, str]:
    """The files a deploy's state read brings the last line of: the audit log (the run's audit record
    continues from its head) and the last deploy's result (published again after a failure)."""
    return config.audit.jsonl, metrics.deploy_file(config.observability.node_exporter.textfile_directory)


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


def not_compared(manifest: Manifest, state: HostSnapshot, secrets_known: bool) -> HostSnapshot:
    """Count as matching the content of each file the host did not hash for us (``UNREAD``) and, without
    the secrets' values, of each file holding one; ``state.not_compared`` names them."""
    for item in manifest.files:
        current = state.paths.get(item.path)
        if current is None or current.kind != "file":
            continue
        if current.sha256 == UNREAD or (item.sensitive and not secrets_known):
            state.paths[item.path] = replace(current, sha256=content_hash(item, state.salt))
            state.not_compared.add(item.path)
    return state


def _review_manifest(host, certificates: set[str] | None, secrets_known: bool | None) -> tuple[Manifest, bool]:
    """The manifest, with the secrets' values when the controller has them all (else placeholders)."""
    if secrets_known is not False:
        try:
            return host_manifest(host, certificates), True
        except RenderError:  # a missing secret; any other problem fails again just below
            pass
    return host_manifest(host, certificates, with_secrets=False), False


def plan_host(host, manifest: Manifest | None = None, force_fstab: bool = False, review: bool = False
              ) -> tuple[Manifest, HostSnapshot, Plan]:
    """Read ``host``'s state in one command and plan against ``manifest`` (rendered when None).
    ``review``: for showing, not applying (see the module's docstring)."""
    secrets_known = None
    if manifest is None:
        manifest, secrets_known = _review_manifest(host, None, None) if review else (host_manifest(host, None), True)
    state = read_state(host, manifest, () if review else deploy_last_lines(host_config(host)))
    if state.read_only and not review:
        raise PlanIdentityError(f"{host.name}: the host answered as the plan identity (its key runs only the "
                                f"state reader): it can plan, never deploy")
    if {d.name for d in manifest.domains if d.tls} - state.certificates:
        # a vhost awaits its certificate: until issuance it is served over HTTP only
        manifest, secrets_known = _review_manifest(host, state.certificates, secrets_known) if review else (
            host_manifest(host, state.certificates), True)
    if review:
        not_compared(manifest, state, secrets_known is not False)
    return manifest, state, make_plan(manifest, state, force_fstab=force_fstab)
