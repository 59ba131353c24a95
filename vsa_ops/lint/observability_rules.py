"""The design's rules for the observability stack: retention, log labels, scrape targets."""

from __future__ import annotations

from collections.abc import Iterator

from .. import yamlio
from ..config import HubConfig
from ..manifest import Manifest
from .base import Finding, _network_name, _networks_of, _services, rule


@rule
def prometheus_retention(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    for stack, name, spec in _services(manifest):
        if "prom/prometheus" not in str(spec.get("image", "")):
            continue
        command = " ".join(spec.get("command") or [])
        for flag in ("--storage.tsdb.retention.time=", "--storage.tsdb.retention.size="):
            if flag not in command:
                yield Finding("prometheus-retention", stack.name, name, f"has no {flag[:-1]} limit")


@rule
def loki_retention(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    for item in manifest.files:
        if not item.path.endswith("loki-config.yml"):
            continue
        config = yamlio.load(item.content) or {}
        compactor = config.get("compactor") or {}
        stack = item.path.split("/")[3]
        if not compactor.get("retention_enabled"):
            yield Finding("loki-retention", stack, "loki", "compactor.retention_enabled is off: logs are kept forever")
        elif not compactor.get("delete_request_store"):
            yield Finding("loki-retention", stack, "loki",
                          "retention needs compactor.delete_request_store (Loki 3 refuses to start)")
        limits = config.get("limits_config") or {}
        for period in (config.get("schema_config") or {}).get("configs") or []:
            if limits.get("allow_structured_metadata", True) and (
                    period.get("store") != "tsdb" or period.get("schema") != "v13"):
                yield Finding("loki-retention", stack, "loki",
                              "structured metadata needs tsdb and schema v13 (Loki 3 refuses to start)")


@rule
def log_label_cardinality(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Loki labels come only from fields with few values; one stream per client address, URI or request id
    soon hits Loki's stream limit and logs stop arriving."""
    shipper = hub.observability.log_shipper
    for job in shipper.jobs:
        for label in job.unbounded_labels():
            yield Finding("log-label-cardinality", "observability", shipper.kind,
                          f"job {job.job_name}: label {label.name} is fed from {label.field}, whose values are "
                          "unbounded; keep it in the line (LogQL | json) or label a bounded field")


@rule
def scrape_targets(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Each Prometheus target names a service that shares a network with Prometheus (else it is down forever)."""
    prometheus = hub.observability.prometheus.container.container_name
    peers: dict[str, set[str]] = {}
    for stack, name, spec in _services(manifest):
        networks = {_network_name(stack, key) for key in _networks_of(spec)}
        for alias in (name, spec.get("container_name", f"{stack.name}-{name}-1")):
            peers.setdefault(alias, set()).update(networks)
    for item in manifest.files:
        if not item.path.endswith("/prometheus/prometheus.yml"):
            continue
        for job in (yamlio.load(item.content) or {}).get("scrape_configs") or []:
            for target in (t for static in job.get("static_configs") or [] for t in static.get("targets") or []):
                host = str(target).rpartition(":")[0] or str(target)
                if not peers.get(host, set()) & peers.get(prometheus, set()):
                    yield Finding("scrape-target", "observability", "prometheus",
                                  f"job {job.get('job_name')}: target {target} is no service on a network of {prometheus}")
