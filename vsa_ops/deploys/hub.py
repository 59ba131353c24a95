"""Converge a host to its manifest: read its state once, plan, apply exactly the plan.

What a run does is an explicit `DeployRequest` that the code running the deploy puts in each host's
data (``host.data.vsa_deploy_request``); what the run found comes back the same way, as a
`HostOutcome` in ``host.data.vsa_deploy_outcome``. A plain `pyinfra inventory.py deploy.py` sets no
request and converges everything: nothing is read from the environment, so a variable left in a
shell can neither narrow a deploy nor delete a certificate.
"""

from __future__ import annotations

import getpass
import os
import socket
import time

from pyinfra import host
from pyinfra.api import deploy, operation

from .. import metrics
from ..config.storage import domain_files
from ..host_manifest import host_manifest
from ..inventory import host_config
from ..operations import certificates, docker, fstab, lock, shipper, stacks, tree, users
from ..plan import PlanError, assume_applied, make_plan, managed_paths, restrict
from ..planning import SALT, deploy_last_lines, plan_host
from ..shipper_positions import cut_over_from, layout
from .request import OUTCOME_KEY, REQUEST_KEY, DeployRequest, HostOutcome

CONTROLLER = socket.gethostname()
def run_owner(run_id: str) -> str:
    """Who holds the run lock: run id, controller, pid, start time, user (no spaces inside fields)."""
    return f"{run_id} {CONTROLLER} {os.getpid()} {int(time.time())} {getpass.getuser()}"


def _stale(holder: str) -> str:
    """``holder`` if it is a run of this controller whose process is gone, or an earlier run of this very
    process (its runs come one after another: a domain change's rollback follows a run that Ctrl-C
    stopped while it held the lock), else ''. This run's own lock is its own (lock.sh) either way."""
    fields = holder.split()
    if len(fields) < 3 or fields[1] != CONTROLLER or not fields[2].isdigit():
        return ""
    if fields[2] == str(os.getpid()):
        return holder
    try:
        os.kill(int(fields[2]), 0)
    except ProcessLookupError:
        return holder
    except PermissionError:
        pass
    return ""


def _domain_paths(name: str) -> set[str]:
    return set(domain_files(name).values())


def deferred_summary(summary: str, deferred: list[str]) -> str:
    """The plan's summary, saying which certificates this run did not order."""
    if not deferred:
        return summary
    note = f"certificates deferred for {', '.join(deferred)} (served over HTTP until issued or restored)"
    return note if summary == "no changes" else f"{summary}; {note}"


def _refuse_without_readers(manifest, state, plan) -> None:
    """A change aimed at one domain takes effect through the services that read its files (NGINX): on a
    host where one is not running (never deployed, or stopped) it would be written and never served."""
    down = sorted({f"{stack.name}/{service.name}" for path in [c.file.path for c in plan.files] + plan.removals
                   for stack, service in manifest.services_mounting(path)
                   if state.containers.get((stack.name, service.name)) != "running"})
    if down:
        raise PlanError(f"{host.name}: {', '.join(down)} not running (is the hub deployed?): run `vsa-ops deploy` "
                        f"first")


@operation()
def unchanged():
    """Yields nothing: a converged host shows this one operation under "No Change"."""
    host.noop("the host matches its manifest")
    yield from ()


@deploy("vsa-ops hub")
def converge_hub():
    """Converge this host to its manifest. Adds no operation at all when nothing differs."""
    request: DeployRequest = host.data.get(REQUEST_KEY) or DeployRequest()
    manifest, state, plan = plan_host(host, request.manifest, request.force_fstab)
    target = request.target_domain
    # a domain served without TLS never had a certificate: nothing to delete
    delete_certificate = request.delete_certificate if request.delete_certificate in state.certificates else None
    if target:
        plan = restrict(plan, _domain_paths(target), {target})
    deferred = [d.name for d in plan.certificates] if request.defer_certificates else []
    plan.certificates = [] if deferred else plan.certificates
    hub = host_config(host)
    audit_log, deploy_file = deploy_last_lines(hub)
    setattr(host.data, OUTCOME_KEY, HostOutcome(deferred_summary(plan.summary(), deferred),
                                                state.last_lines.get(audit_log),
                                                metrics.success_recorded(state.last_lines.get(deploy_file))))
    if plan.empty and not delete_certificate:
        unchanged(name="no changes: the host matches its manifest")
        return
    if target:
        _refuse_without_readers(manifest, state, plan)
    missing = sorted(set(plan.images) - set(docker.local_images(plan.images)))
    if missing and manifest.pull == "never":
        raise PlanError(f"{host.name}: images on neither the host nor this controller, and vsa.docker.pull is "
                        f"'never': {', '.join(missing)}")
    certbot = hub.reverse_proxy.certbot
    # A changed log shipper kind: the old one stops and hands its positions over (README "Log shipping").
    swap = None if target else cut_over_from(manifest.stacks, state.containers, hub.observability.log_shipper.kind)
    owner = run_owner(request.run_id)
    paths, files, secret_files = managed_paths(manifest)
    hold = lock.Hold(owner, plan.fingerprint, tuple(paths), tuple(files), tuple(secret_files), SALT,
                     stale_owner=_stale(plan.lock_holder), wait=request.lock_wait)
    if plan.transaction_only and not delete_certificate and not swap:
        # One command: the lock is taken and given back inside the transaction.
        stacks.activate(name=f"files and stacks: {plan.summary()} (under the run lock)", plan=plan, manifest=manifest,
                        run=request.run_id, lock=hold)
        return
    lock.acquire(name="take the run lock", hold=hold)
    docker.engine(name="docker engine, compose v2, daemon.json and host tools", install=plan.install_docker,
                  daemon_json=plan.daemon_json, restart=plan.restart_docker, packages=plan.packages)
    fstab.entries(name="fstab entries by LABEL", change=plan.fstab)
    users.system_users(name=f"container users {', '.join(n for n, _ in plan.users) or '(none)'}", users=plan.users)
    tree.directories(name=f"directory tree ({len(plan.directories)} to fix)", changes=plan.directories)
    docker.networks(name=f"shared networks {', '.join(plan.networks) or '(none)'}", names=plan.networks)
    docker.ship_images(name=f"images {', '.join(plan.images) or '(none)'}", images=plan.images)
    if swap:
        shipper.cut_over(name=f"log shipper {swap[1]} to {hub.observability.log_shipper.kind}: positions carried over",
                         project=swap[0], old=swap[1], state_dir=hub.observability.log_shipper.state_dir,
                         layout=layout(hub.observability.log_shipper, hub.audit.jsonl))
    stacks.activate(name=f"files and stacks: {plan.summary()}", plan=plan, manifest=manifest, run=request.run_id,
                    resume=shipper.resume_command(swap[0], swap[1]) if swap else "")
    if plan.certificates:
        names = [d.name for d in plan.certificates]
        certificates.issue(name=f"certificates for {', '.join(names)}", domains=plan.certificates, certbot=certbot)
        with_tls = host_manifest(host, state.certificates | set(names))
        tls_plan = make_plan(with_tls, assume_applied(state, manifest, plan))
        if target:
            tls_plan = restrict(tls_plan, _domain_paths(target), set())
        tls_plan.certificates = []
        stacks.activate(name=f"TLS vhosts for {', '.join(names)}: {tls_plan.summary()}", plan=tls_plan,
                        manifest=with_tls, run=request.run_id)
    if delete_certificate:
        certificates.delete(name=f"delete certificate {delete_certificate}", names=[delete_certificate],
                            certbot=certbot)
    lock.release(name="release the run lock", owner=owner)
