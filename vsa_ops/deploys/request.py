"""What the code that runs the deploy asks of it, and what it reports back, through each host's
pyinfra data. Plain data, importable without pyinfra."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from ..manifest import Manifest

REQUEST_KEY = "vsa_deploy_request"
OUTCOME_KEY = "vsa_deploy_outcome"


@dataclass(frozen=True)
class DeployRequest:
    """What one run of the deploy does on a host."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    target_domain: str | None = None  # only this domain's files and certificate
    delete_certificate: str | None = None
    lock_wait: int = 60  # seconds to wait for another run's lock
    force_fstab: bool = False  # an fstab entry may replace the device of a mounted mount point
    manifest: Manifest | None = None  # already rendered by the caller (certificates assumed present)
    # Order no certificate: a TLS site the host holds no certificate for keeps its HTTP vhost (with
    # the ACME webroot) until a later run. The first deploy of a replacement host, before
    # `vsa-ops restore` brings the old certificates back (hundreds of new orders hit the CA's limits).
    defer_certificates: bool = False


@dataclass(frozen=True)
class HostOutcome:
    """What the run found on a host: its plan's summary, the audit log's last line as the state read
    saw it (the base of the run's audit record), and whether the host's metrics already say its last
    deploy succeeded (else even a deploy that changes nothing publishes its result)."""

    summary: str
    audit_head: bytes | None
    success_recorded: bool = False
