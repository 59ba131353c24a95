"""Converge a host to its manifest: read its state once, plan, apply exactly the plan.

`vsa-ops` runs this deploy in its own process and hands it a RunOptions; a plain
`pyinfra inventory.py deploy.py` takes them from the environment: VSA_TARGET_DOMAIN limits the run to
one domain's files and certificate; VSA_DELETE_CERTIFICATE names a certificate to delete;
VSA_LOCK_WAIT is how long to wait for another run's lock; VSA_FORCE_FSTAB=1 lets an fstab entry
replace the device of a mounted mount point.
"""

from __future__ import annotations

import getpass
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy, operation

from ..config.storage import domain_files
from ..domains import DOMAINS_FILE, DOMAINS_FILE_KEY, load_registry, served_by
from ..facts import HostState
from ..state_read import HostSnapshot
from ..inventory import host_config
from ..manifest import Manifest
from ..operations import certificates, docker, fstab, lock, stacks, tree, users
from ..plan import Plan, PlanError, assume_applied, make_plan, managed_paths, owned_directories, restrict
from ..project import find_root, load_secrets, load_sources
from ..render import render_host

CONTROLLER = socket.gethostname()
# Files holding secrets are hashed after this, new for every run (see facts.host_state.hash_command).
SALT = uuid.uuid4().hex
# Host data naming the secrets file for this host (the lab's is .lab/secrets.env).
SECRETS_FILE_KEY = "vsa_secrets_file"


@dataclass
class RunOptions:
    """What one run of the deploy does, and what it reports back to the `vsa-ops` command."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    target_domain: str | None = None
    delete_certificate: str | None = None
    lock_wait: int = 60
    force_fstab: bool = False
    # Manifests the caller already rendered (certificates assumed present), by host name.
    manifests: dict[str, Manifest] = field(default_factory=dict)
    # Out: what each host's plan changes, and the audit log's last line as the state read saw it,
    # for the audit record.
    summaries: dict[str, str] = field(default_factory=dict)
    audit_heads: dict[str, bytes | None] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, **values) -> RunOptions:
        """The environment's knobs, under ``values`` (those not None)."""
        environ = os.environ
        defaults = {"target_domain": environ.get("VSA_TARGET_DOMAIN") or None,
                    "delete_certificate": environ.get("VSA_DELETE_CERTIFICATE") or None,
                    "lock_wait": int(environ.get("VSA_LOCK_WAIT", "60")),
                    "force_fstab": environ.get("VSA_FORCE_FSTAB") == "1"}
        return cls(**(defaults | {k: v for k, v in values.items() if v is not None}))


_options: RunOptions | None = None


@contextmanager
def run_options(options: RunOptions) -> Iterator[RunOptions]:
    """The options of the deploy that runs inside this block."""
    global _options
    previous, _options = _options, options
    try:
        yield options
    finally:
        _options = previous


def current_options() -> RunOptions:
    global _options
    if _options is None:
        _options = RunOptions.from_environment()  # a plain `pyinfra` run
    return _options


def run_owner(run_id: str) -> str:
    """Who holds the run lock: run id, controller, pid, start time, user (no spaces inside fields)."""
    return f"{run_id} {CONTROLLER} {os.getpid()} {int(time.time())} {getpass.getuser()}"


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


def registry_path(current_host, root: Path) -> Path:
    configured = current_host.data.get(DOMAINS_FILE_KEY)
    return Path(configured) if configured else root / DOMAINS_FILE


def host_manifest(current_host, certificates: set[str] | None, with_secrets: bool = True) -> Manifest:
    """The manifest of ``current_host``. ``certificates`` names the certificates on the host
    (None: assume all), so domains without one get an HTTP-only vhost. Without secrets, their
    files hold placeholders (for checks that need no values)."""
    root = find_root()
    secrets_file = current_host.data.get(SECRETS_FILE_KEY)
    domains = [d for d in load_registry(registry_path(current_host, root)).values()
               if served_by(d, current_host.name, current_host.groups)]
    config = host_config(current_host)
    return render_host(config, load_sources(root), host=current_host.name,
                       secrets=load_secrets(root, config.secrets.names(),
                                            file=Path(secrets_file) if secrets_file else None)
                       if with_secrets else None,
                       domains=domains, certificates=certificates)


def read_state(manifest: Manifest, audit_log: str | None = None) -> HostSnapshot:
    paths, files, secret_files = managed_paths(manifest)
    state = host.get_fact(HostState, paths=paths, files=files, owned=owned_directories(manifest),
                          secret_files=secret_files, salt=SALT, audit_log=audit_log)
    state.salt = SALT
    return state


def plan_host(current_host=None, options: RunOptions | None = None) -> tuple[Manifest, HostSnapshot, Plan]:
    """Read the host's state in one command and plan against it."""
    current_host = host if current_host is None else current_host
    options = options or current_options()
    manifest = options.manifests.get(current_host.name) or host_manifest(current_host, None)
    state = read_state(manifest, host_config(current_host).audit.jsonl)
    options.audit_heads[current_host.name] = state.audit_head
    if {d.name for d in manifest.domains if d.tls} - state.certificates:
        # a vhost awaits its certificate: until issuance it is served over HTTP only
        manifest = host_manifest(current_host, state.certificates)
    return manifest, state, make_plan(manifest, state, force_fstab=options.force_fstab)


def _domain_paths(name: str) -> set[str]:
    return set(domain_files(name).values())


@operation()
def unchanged():
    """Yields nothing: a converged host shows this one operation under "No Change"."""
    host.noop("the host matches its manifest")
    yield from ()


@deploy("vsa-ops hub")
def converge_hub():
    """Converge this host to its manifest. Adds no operation at all when nothing differs."""
    options = current_options()
    manifest, state, plan = plan_host(host, options)
    target = options.target_domain
    # a domain served without TLS never had a certificate: nothing to delete
    delete_certificate = options.delete_certificate if options.delete_certificate in state.certificates else None
    if target:
        plan = restrict(plan, _domain_paths(target), {target})
    options.summaries[host.name] = plan.summary()
    if plan.empty and not delete_certificate:
        unchanged(name="no changes: the host matches its manifest")
        return
    missing = sorted(set(plan.images) - set(docker.local_images(plan.images)))
    if missing and manifest.pull == "never":
        raise PlanError(f"{host.name}: images on neither the host nor this controller, and vsa.docker.pull is "
                        f"'never': {', '.join(missing)}")
    certbot = host_config(host).reverse_proxy.certbot
    owner = run_owner(options.run_id)
    paths, files, secret_files = managed_paths(manifest)
    hold = lock.Hold(owner, plan.fingerprint, tuple(paths), tuple(files), tuple(secret_files), SALT,
                     stale_owner=_stale(plan.lock_holder), wait=options.lock_wait)
    if plan.transaction_only and not delete_certificate:
        # One command: the lock is taken and given back inside the transaction.
        stacks.activate(name=f"files and stacks: {plan.summary()} (under the run lock)", plan=plan, manifest=manifest,
                        lock=hold)
        return
    lock.acquire(name="take the run lock", hold=hold)
    docker.engine(name="docker engine, compose v2, daemon.json and host tools", install=plan.install_docker,
                  daemon_json=plan.daemon_json, restart=plan.restart_docker, packages=plan.packages)
    fstab.entries(name="fstab entries by LABEL", change=plan.fstab)
    users.system_users(name=f"container users {', '.join(n for n, _ in plan.users) or '(none)'}", users=plan.users)
    tree.directories(name=f"directory tree ({len(plan.directories)} to fix)", changes=plan.directories)
    docker.networks(name=f"shared networks {', '.join(plan.networks) or '(none)'}", names=plan.networks)
    docker.ship_images(name=f"images {', '.join(plan.images) or '(none)'}", images=plan.images)
    stacks.activate(name=f"files and stacks: {plan.summary()}", plan=plan, manifest=manifest)
    if plan.certificates:
        names = [d.name for d in plan.certificates]
        certificates.issue(name=f"certificates for {', '.join(names)}", domains=plan.certificates, certbot=certbot)
        with_tls = host_manifest(host, state.certificates | set(names))
        tls_plan = make_plan(with_tls, assume_applied(state, manifest, plan))
        if target:
            tls_plan = restrict(tls_plan, _domain_paths(target), set())
        tls_plan.certificates = []
        stacks.activate(name=f"TLS vhosts for {', '.join(names)}: {tls_plan.summary()}", plan=tls_plan,
                        manifest=with_tls)
    if delete_certificate:
        certificates.delete(name=f"delete certificate {delete_certificate}", names=[delete_certificate],
                            certbot=certbot)
    lock.release(name="release the run lock", owner=owner)
