"""What ``vsa-ops backup`` and ``vsa-ops restore`` do: run the hosts' backup program, append the audit
records, refuse a restore over data, probe every domain after one."""

from __future__ import annotations

import http.client
import shlex
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from ..audit import heads
from ..audit.records import Entry
from ..audit.trail import forget_head, head_key
from ..deploys.request import DeployRequest
from ..domain_changes import _targets, registry_path
from ..domains import load_registry
from ..host_programs import reload_command
from ..inventory import host_config
from ..probe import Probe, request
from ..pyinfra_glue.connections import connected
from ..pyinfra_glue.inventory_files import load_inventory
from ..pyinfra_glue.runner import deploying
from ..recording import record_audit
from .hosts import BackupError, HostRun, holds, hosts_of, run_on


def backup(inventory_file: Path, root: Path, limit: str | None, echo: Callable[[str], None]) -> dict[str, HostRun]:
    """A backup now on each selected host; one audit record per host (ok or failed, snapshot, size)."""
    runs = run_on(inventory_file, root, limit, "run", progress=echo)
    entries = []
    for name, run in runs.items():
        if run.ok and run.fields.get("result") != "ok":
            run.error = (run.lines[-1] if run.lines else "no result")[:300]
        if run.error and run.error.startswith("backups are off"):
            continue
        snapshot = run.fields.get("snapshot", "")[:8]
        changes = [f"snapshot {snapshot}", f"size {run.fields.get('size', '?')} bytes",
                   f"added {run.fields.get('added', '?')} bytes"] if run.ok else []
        repository = host_config(_host(inventory_file, root, name)).backup.repository or "-"
        entries.append(Entry(name, "backup", repository, "ok" if run.ok else "failed", round(run.duration, 1),
                             changes, run.error))
    if entries:
        record_audit(root, inventory_file, entries, echo=echo)
    return runs


def _host(inventory_file: Path, root: Path, name: str):
    return next(h for h in load_inventory(inventory_file, root) if h.name == name)


def restore(inventory_file: Path, root: Path, limit: str, snapshot: str | None, force: bool,
            echo: Callable[[str], None]) -> list:
    """Restore ``snapshot`` (default: the host's latest) onto the one host ``limit`` names, converge
    its sites onto the restored certificates, reload, probe its domains. Refuses a host with dashboard
    rows, Grafana data or certificates unless ``force``."""
    hosts = hosts_of(inventory_file, root, limit)
    if len(hosts) != 1:
        raise BackupError(f"restore: --limit must name one host ({limit!r} selects {len(hosts)})")
    name = hosts[0].name
    if snapshot is not None and not (4 <= len(snapshot) <= 64 and all(c in "0123456789abcdef" for c in snapshot)) \
            and snapshot != "latest":
        raise BackupError(f"restore: {snapshot!r} is not a snapshot id (see vsa-ops backups)")
    found = run_on(inventory_file, root, name, "holds")[name]
    if not found.ok:
        raise BackupError(f"restore {name}: {found.error}")
    overwrite, refusal = what_it_overwrites(holds(found))
    if refusal and not force:
        raise BackupError(f"restore {name}: {refusal}")
    echo(f"{name}: restoring {snapshot or 'latest'} over {overwrite}")
    started = time.monotonic()
    run = run_on(inventory_file, root, name, f"restore {snapshot or 'latest'}")[name]
    if run.ok and run.fields.get("result") != "ok":
        run.error = (run.lines[-1] if run.lines else "no result")[:300]
    restored = run.fields.get("snapshot", snapshot or "latest")[:8]
    if run.error:
        record_audit(root, inventory_file, [Entry(name, "restore", restored, "failed",
                                                  round(time.monotonic() - started, 1), (), run.error)], echo=echo)
        raise BackupError(f"restore {name}: {run.error}")
    changes = [line.removeprefix("restored ") for line in run.lines if line.startswith("restored ")]
    for line in changes:
        echo(f"{name}: restored {line}")
    if any(line.startswith("audit ") for line in changes):
        changes.append(_rebase_audit_head(inventory_file, root, name))
    converged, error = _converge(inventory_file, root, name, echo)
    echo(f"{name}: sites converged: {converged}")
    changes.append(f"sites converged: {converged}")
    error = error or _reload_nginx(inventory_file, root, name)
    probes = _probe(inventory_file, root, name)
    failed = [p for p in probes if not p.ok]
    error = "; ".join(f"{p.domain}: {', '.join(p.problems)}" for p in failed) or error
    record_audit(root, inventory_file, [Entry(name, "restore", restored, "failed" if error else "ok",
                                              round(time.monotonic() - started, 1), changes, error)], echo=echo)
    if error:
        raise BackupError(f"restore {name}: restored snapshot {restored}, but {error}")
    return probes


def what_it_overwrites(counts: dict[str, int]) -> tuple[str, str | None]:
    """What a restore would overwrite on a host holding ``counts`` (``hosts.holds``), and why it
    refuses without --force. Certificates count as data: a plain deploy on the new host already
    ordered fresh ones (the README's recovery deploys with --defer-certificates first)."""
    overwrite = (f"{counts.get('postgres_rows', 0)} dashboard database rows, {counts.get('certificates', 0)} "
                 f"certificates, {counts.get('grafana_files', 0)} Grafana files and "
                 f"{counts.get('audit_records', 0)} audit records")
    if counts.get("postgres_rows") or counts.get("grafana_files") or counts.get("certificates"):
        return overwrite, (f"the host already holds data; a restore would overwrite its {overwrite}. "
                           "Run again with --force to overwrite them")
    return overwrite, None


def _rebase_audit_head(inventory_file: Path, root: Path, name: str) -> str:
    """The restored trail ends where the snapshot did: what this controller remembers of the lost
    host's trail after that (its backup record, at least) is not on the host any more. Forgotten on
    purpose, and said in the restore's record; the restore's record becomes the head to remember."""
    remembered = heads.load(head_key(_host(inventory_file, root, name)))
    forget_head(inventory_file, root, name)
    return (f"audit trail continues from the snapshot (this controller had seen the lost host's up to seq "
            f"{remembered.seq})" if remembered else "audit trail continues from the snapshot")


def _converge(inventory_file: Path, root: Path, name: str, echo: Callable[[str], None]) -> tuple[str, str | None]:
    """The host's sites on the restored certificates (a deploy limited to it): TLS vhosts come up;
    only the certificates the snapshot lacks are ordered."""
    with deploying(root, inventory_file, [name], DeployRequest(), echo=echo) as run:
        result = run.result
    summary = result.summaries.get(name) or "no changes"
    return summary, f"converging its sites failed at {result.failed_step}" if result.returncode else None


def _reload_nginx(inventory_file: Path, root: Path, name: str) -> str | None:
    """NGINX reads the restored certificates after a reload (no restart: sites keep serving)."""
    command = reload_nginx_command(host_config(_host(inventory_file, root, name)).reverse_proxy.nginx.container)
    with connected(inventory_file, root, [name]) as sessions:
        session = sessions[name]
        if isinstance(session, str):
            return f"reloading NGINX: {session}"
        ok, stdout = session[1](command)
    return None if ok else f"reloading NGINX failed: {stdout.strip()[-200:]}"


def reload_nginx_command(nginx) -> str:
    """Check, then reload, NGINX's configuration; what either says on stdout (the caller shows it)."""
    steps = [shlex.join(["docker", "exec", nginx.container_name, *nginx.validate_command])] \
        if nginx.validate_command else []
    steps.append(reload_command(nginx.container_name, nginx.reload_signal,
                                nginx.reload_command or ("nginx", "-s", "reload")))
    return "{ " + " && ".join(steps) + "; } 2>&1"  # both steps' stderr: a bare 2>&1 was the last one's


def _probe(inventory_file: Path, root: Path, name: str, settle: float = 20) -> list[Probe]:
    """Every domain the host serves answers: over HTTPS where it has TLS (the certificate's serial is
    kept in ``issuer``'s place for the caller), 401 without a password where it has basic auth."""
    inventory = load_inventory(inventory_file, root)
    registry = load_registry(registry_path(root, inventory))
    probes = []
    for domain in registry.values():
        target = next((t for t in _targets(inventory, domain) if t.host.name == name), None)
        if target is None:
            continue
        deadline = time.monotonic() + settle
        while True:
            probe = Probe(domain.name)
            try:
                answer, certificate = request(target.address, target.https_port if domain.tls else target.http_port,
                                              domain.name, tls=domain.tls, ca_file=target.ca_file)
                probe.status = answer.status
                if certificate:
                    probe.issuer = f"serial {x509.load_der_x509_certificate(certificate).serial_number:x}"
                if domain.auth and answer.status != 401:
                    probe.problems.append(f"answers {answer.status} without a password, not 401")
                elif answer.status >= 500:
                    probe.problems.append(f"answers {answer.status}")
            except (OSError, ssl.SSLError, http.client.HTTPException) as error:
                probe.problems.append(f"{'HTTPS' if domain.tls else 'HTTP'} request failed: {error}")
            if probe.ok or time.monotonic() >= deadline:
                break
            time.sleep(1)
        probes.append(probe)
    return probes
