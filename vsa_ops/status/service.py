"""``vsa-ops status`` per host: ONE remote command (the host program, then the state read that a
deploy plans from), the plan against the code for drift, and one GET per domain from the controller."""

from __future__ import annotations

import http.client
import shlex
import ssl
from pathlib import Path

from cryptography import x509
from pyinfra.api import StringCommand

from ..domain_changes import _targets, registry_path
from ..domains import load_registry, served_by
from ..errors import VsaError
from ..host_manifest import host_manifest
from ..inventory import InventoryError, host_config, limited
from ..plan import make_plan, managed_paths, owned_directories
from ..plan_report import HostPlan
from ..planning import SALT
from ..probe import request
from ..pyinfra_glue.connections import on_hosts
from ..pyinfra_glue.inventory_files import load_inventory
from ..state_read import parse_host_state, state_command, state_request
from . import checks
from .checks import HostStatus


def status(root: Path, inventory_file: Path, limit: str | None = None) -> list[HostStatus]:
    """Every host of the inventory (or of ``limit``), each with its checks; unreachable hosts too."""
    inventory = load_inventory(inventory_file, root)
    if not limited(inventory, [limit] if limit else None):
        raise InventoryError(f"--limit: no host or group {limit!r} in the inventory")
    registry = load_registry(registry_path(root, inventory))
    probes = {t.host.name: t for domain in registry.values() for t in _targets(inventory, domain)}

    def read(host) -> HostStatus:
        found = HostStatus(host.name)
        try:
            _read_host(host, found)
        except VsaError as error:  # this host's configuration: reported, the others still read
            found.error = str(error).splitlines()[0]
            return found
        names = [d for d in registry.values() if served_by(d, host.name, host.groups)]
        target = probes.get(host.name)
        for domain in names:
            found.domains.append(_probe(target, domain))
        found.checks += [checks.domain_check(row) for row in found.domains]
        return found

    results = on_hosts(inventory_file, root, read, limit)
    return [value if isinstance(value, HostStatus) else HostStatus(name, error=str(value))
            for name, value in results.items()]


def _read_host(host, found: HostStatus) -> None:
    """The host program and the state read in one command; the plan from that state."""
    manifest = host_manifest(host, None)
    audit_log = host_config(host).audit.jsonl
    paths, files, secret_files = managed_paths(manifest)
    # The status program reads no stdin: the state read after it gets the whole request.
    command = (f"sh -c {shlex.quote(checks.host_program())} vsa-status {shlex.quote(audit_log)} </dev/null; "
               + state_command(SALT))
    request = state_request(paths, files, owned_directories(manifest), secret_files)
    ok, output = host.run_shell_command(StringCommand(command), _stdin=request, print_output=False)
    if not ok:
        found.error = f"the status command failed: {' '.join(output.stderr_lines)[:300]}"
        return
    lines = output.stdout_lines
    parts = checks.sections(lines)
    found.containers = checks.containers(parts.get("status-containers", []))
    found.last_deploy = checks.audit_record(parts.get("status-deploy", []))
    found.last_backup = checks.audit_record(parts.get("status-backup", []))
    # The state read prints one line (its framed records), last; the lines before are the status program's.
    state = parse_host_state([line for line in lines if line.strip()][-1:])
    state.salt = SALT
    if {d.name for d in manifest.domains if d.tls} - state.certificates:
        manifest = host_manifest(host, state.certificates)  # as planning.plan_host: HTTP until issued
    found.drift = HostPlan(host.name, make_plan(manifest, state)).changes
    found.checks += [checks.container_check(row) for row in found.containers]
    found.checks.append(checks.drift_check(found.drift))
    found.checks += [c for c in (checks.audit_check("deploy", found.last_deploy),
                                 checks.audit_check("backup", found.last_backup)) if c]


def _probe(target, domain) -> dict:
    """One GET from the controller, as a client would (SNI, the host's published port)."""
    row = {"domain": domain.name, "tls": domain.tls, "auth": bool(domain.auth), "status": None, "error": None,
           "expires": None, "days_left": None}
    if target is None:
        row["error"] = "no address to reach the host at"
        return row
    port = target.https_port if domain.tls else target.http_port
    try:
        answer, certificate = request(target.address, port, domain.name, tls=domain.tls, ca_file=target.ca_file)
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        row["error"] = str(error) or type(error).__name__
        return row
    row["status"] = answer.status
    if certificate:
        row["expires"] = x509.load_der_x509_certificate(certificate).not_valid_after_utc
        row["days_left"] = checks.days_left(row["expires"])
    return row
