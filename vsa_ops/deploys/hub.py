"""Converge a host to its manifest: read its state once, plan, apply exactly the plan."""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy, operation

from ..facts import HostState
from ..facts.host_state import State
from ..inventory import host_config
from ..manifest import Manifest
from ..operations import docker, fstab, lock, stacks, tree, users
from ..plan import Plan, PlanError, make_plan, managed_paths
from ..project import find_root, load_secrets, load_sources
from ..render import render_host

RUN_ID = uuid.uuid4().hex[:10]
# Host data naming the secrets file for this host (the lab's is .lab/secrets.env).
SECRETS_FILE_KEY = "vsa_secrets_file"
CONTROLLER = socket.gethostname()


def run_owner() -> str:
    """Who holds the run lock: run id, controller, pid, start time, user (no spaces inside fields)."""
    return f"{RUN_ID} {CONTROLLER} {os.getpid()} {int(time.time())} {getpass.getuser()}"


def _stale(holder: str) -> str:
    """``holder`` if it is a run of this controller whose process is gone, else ''."""
    fields = holder.split()
    if len(fields) >= 3 and fields[1] == CONTROLLER and fields[2].isdigit():
        try:
            os.kill(int(fields[2]), 0)
        except ProcessLookupError:
            return holder
        except PermissionError:
            pass
    return ""


def host_manifest(current_host, state: State | None) -> Manifest:
    """The manifest of ``current_host``; with ``state``, vhosts await certificates not yet issued."""
    root = find_root()
    secrets_file = current_host.data.get(SECRETS_FILE_KEY)
    return render_host(host_config(current_host), load_sources(root), host=current_host.name,
                       secrets=load_secrets(root, file=Path(secrets_file) if secrets_file else None),
                       certificates=None if state is None else state.certificates)


def read_state(manifest: Manifest) -> State:
    paths, files = managed_paths(manifest)
    return host.get_fact(HostState, paths=paths, files=files)


def plan_host(current_host=None) -> tuple[Manifest, Plan]:
    """Read the host's state in one command and plan against it (the manifest depends on which
    certificates exist, so the state is read for the manifest without certificates first)."""
    current_host = current_host or host
    draft = host_manifest(current_host, None)
    state = read_state(draft)
    manifest = host_manifest(current_host, state)
    if manifest.files != draft.files:
        state = read_state(manifest)
    return manifest, make_plan(manifest, state)


@operation()
def unchanged():
    """Yields nothing: a converged host shows this one operation under "No Change"."""
    host.noop("the host matches its manifest")
    yield from ()


@deploy("vsa-ops hub")
def converge_hub():
    """Converge this host to its manifest. Adds no operation at all when nothing differs."""
    manifest, plan = plan_host()
    if plan.empty:
        unchanged(name="no changes: the host matches its manifest")
        return
    missing = sorted(set(plan.images) - set(docker.local_images(plan.images)))
    if missing and manifest.pull == "never":
        raise PlanError(f"{host.name}: images on neither the host nor this controller, and vsa.docker.pull is "
                        f"'never': {', '.join(missing)}")
    owner = run_owner()
    paths, files = managed_paths(manifest)
    lock.acquire(name="take the run lock", owner=owner, fingerprint=plan.fingerprint, paths=paths, files=files,
                 stale_owner=_stale(plan.lock_holder), wait=int(os.environ.get("VSA_LOCK_WAIT", "60")))
    docker.engine(name="docker engine, compose v2 and daemon.json", install=plan.install_docker,
                  daemon_json=plan.daemon_json, restart=plan.restart_docker)
    fstab.entries(name="fstab entries by LABEL", change=plan.fstab)
    users.system_users(name=f"container users {', '.join(n for n, _ in plan.users) or '(none)'}", users=plan.users)
    tree.directories(name=f"directory tree ({len(plan.directories)} to fix)", changes=plan.directories)
    docker.networks(name=f"shared networks {', '.join(plan.networks) or '(none)'}", names=plan.networks)
    docker.ship_images(name=f"images {', '.join(plan.images) or '(none)'}", images=plan.images)
    stacks.activate(name=f"files and stacks: {plan.summary()}", plan=plan, manifest=manifest)
    lock.release(name="release the run lock", owner=owner)
