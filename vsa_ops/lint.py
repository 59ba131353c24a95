"""Design rules checked on a rendered manifest. Each rule is a small function that yields findings;
errors fail ``vsa-ops lint``, warnings are printed only."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import yamlio
from .config import HubConfig, parse_size
from .manifest import Manifest, Stack
from .render.compose import ROOT_ACCESS_LABEL

DATABASE_IMAGES = re.compile(r"(^|/)(postgres|postgis|mysql|mariadb|mongo|redis|valkey|keydb)(:|@|$)")
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run")
RESTART_POLICIES = re.compile(r"always|unless-stopped|on-failure(:\d+)?")

# Components past their end of life: image prefix, date, what to do.
END_OF_LIFE = [
    ("grafana/promtail:", dt.date(2026, 3, 2), "Promtail is end-of-life; set observability.log_shipper.kind to alloy"),
    ("prom/prometheus:v2.", dt.date(2025, 7, 31), "Prometheus 2.53 LTS ended; move to the 3.5 LTS line"),
    ("grafana/grafana:10.", dt.date(2025, 6, 30), "Grafana 10.4 is out of support; move to a supported release"),
    ("nginx:1.25", dt.date(2024, 5, 29), "the NGINX 1.25 branch is frozen at 1.25.5; move to a supported stable line"),
    ("grafana/loki:3.0", dt.date(2025, 4, 1), "Loki 3.0 is far behind the supported 3.x releases"),
    ("certbot/certbot:v2.", dt.date(2025, 6, 1), "certbot before 4.1 lacks ARI renewals; move to 4.1 or newer"),
]


@dataclass(frozen=True)
class Finding:
    rule: str
    stack: str
    service: str
    why: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.stack}/{self.service}" if self.service else (self.stack or "host")
        return f"{self.severity}: {self.rule} {where}: {self.why}"


Rule = Callable[[Manifest, HubConfig], Iterator[Finding]]
RULES: list[Rule] = []


def rule(func: Rule) -> Rule:
    RULES.append(func)
    return func


def lint(manifest: Manifest, hub: HubConfig, today: dt.date | None = None) -> list[Finding]:
    findings = [finding for check in RULES for finding in check(manifest, hub)]
    findings.extend(_end_of_life(manifest, today or dt.date.today()))
    return findings


def _services(manifest: Manifest) -> Iterator[tuple[Stack, str, dict[str, Any]]]:
    for stack in manifest.stacks:
        for name, spec in stack.compose["services"].items():
            yield stack, name, spec or {}


def _networks_of(spec: dict[str, Any]) -> list[str]:
    networks = spec.get("networks") or []
    return list(networks) if not isinstance(networks, list) else networks


def _network_definition(stack: Stack, key: str) -> dict[str, Any]:
    return (stack.compose.get("networks") or {}).get(key) or {}


def _network_name(stack: Stack, key: str) -> str:
    return _network_definition(stack, key).get("name", key)


def _mounts(spec: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            yield volume.get("source", ""), volume.get("target", ""), bool(volume.get("read_only"))
        else:
            parts = str(volume).split(":")
            yield parts[0], parts[1] if len(parts) > 1 else parts[0], len(parts) > 2 and "ro" in parts[2].split(",")


@rule
def database_networks(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """A database or cache joins only its stack's internal network and publishes no port."""
    for stack, name, spec in _services(manifest):
        if not DATABASE_IMAGES.search(str(spec.get("image", ""))):
            continue
        if spec.get("network_mode") == "host":
            yield Finding("db-network", stack.name, name, "a database must not use the host network")
        if spec.get("ports"):
            yield Finding("db-network", stack.name, name, f"a database must publish no port (publishes {spec['ports']})")
        for key in _networks_of(spec) or ["default"]:
            net = _network_name(stack, key)
            definition = _network_definition(stack, key)
            known = hub.networks.get(net)
            if known is not None and known.shared or definition.get("external"):
                yield Finding("db-network", stack.name, name,
                              f"joins {net}; a database joins only its stack's internal network")
            elif not (definition.get("internal") or (known is not None and known.internal)):
                yield Finding("db-network", stack.name, name,
                              f"joins {net}, which is not internal; a database joins only its stack's internal network")


@rule
def network_isolation(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Isolated networks are internal and hold only the containers the design puts on them."""
    for stack in manifest.stacks:
        for key, definition in (stack.compose.get("networks") or {}).items():
            net = (definition or {}).get("name", key)
            known = hub.networks.get(net)
            if known is not None and known.internal and not (definition or {}).get("internal"):
                yield Finding("network-isolation", stack.name, "", f"network {net} must be internal: true")
    for stack, name, spec in _services(manifest):
        container = spec.get("container_name", f"{stack.name}-{name}-1")
        for key in _networks_of(spec):
            net = _network_name(stack, key)
            known = hub.networks.get(net)
            if known is not None and known.members is not None and container not in known.members:
                yield Finding("network-isolation", stack.name, name,
                              f"{container} joins {net}, which the design reserves for {', '.join(known.members)}")


@rule
def unknown_networks(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    for stack, name, spec in _services(manifest):
        for key in _networks_of(spec):
            if key not in (stack.compose.get("networks") or {}):
                yield Finding("unknown-network", stack.name, name, f"joins network {key}, defined nowhere")


@rule
def docker_socket_read_only(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """The Docker socket (or a folder holding it) is mounted read-only wherever it is mounted."""
    for stack, name, spec in _services(manifest):
        for source, _target, read_only in _mounts(spec):
            if source.rstrip("/") in DOCKER_SOCKETS and not read_only:
                yield Finding("docker-socket-ro", stack.name, name, f"mounts {source} read-write; mount it :ro")


ROOT_EQUIVALENT_CAPS = {"ALL", "SYS_ADMIN"}


def _root_access_reason(spec: dict[str, Any]) -> str:
    labels = spec.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(str(item).partition("=")[::2] for item in labels)
    return str(labels.get(ROOT_ACCESS_LABEL, "")).strip()


@rule
def root_equivalent_access(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Privileged, the host's / mounted read-write, or capabilities that amount to root: an error unless the
    service names why (container.root_access_reason; label vsa.root-access-reason in a project stack). The
    Docker socket is root on the host whatever its :ro (the API it serves can start a privileged
    container): a warning unless a reason is named."""
    for stack, name, spec in _services(manifest):
        if _root_access_reason(spec):
            continue
        if spec.get("privileged"):
            yield Finding("root-access", stack.name, name, "is privileged; name why in container.root_access_reason")
        for source, _target, read_only in _mounts(spec):
            if source.rstrip("/") == "" and source.startswith("/") and not read_only:
                yield Finding("root-access", stack.name, name,
                              "mounts the host's / read-write; mount it :ro or name why in container.root_access_reason")
            if source.rstrip("/") in DOCKER_SOCKETS:
                yield Finding("root-access", stack.name, name,
                              f"mounts {source}: the Docker API is root on the host, even :ro; name why in "
                              f"container.root_access_reason", severity="warning")
        strong = ROOT_EQUIVALENT_CAPS & set(spec.get("cap_add") or [])
        if strong:
            yield Finding("root-access", stack.name, name,
                          f"adds capability {', '.join(sorted(strong))}; name why in container.root_access_reason")


@rule
def user_model(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Containers of the design's user model run as its users, whatever the overrides say."""
    design = {c.container.container_name: c.container.runs_as
              for stack in HubConfig().builtin_stacks().values() for c in stack.values()}
    for stack, name, spec in _services(manifest):
        runs_as = design.get(spec.get("container_name", ""))
        if runs_as is None:
            continue
        user = spec.get("user")
        if runs_as.set_in_compose:
            if user is None or str(user).split(":")[0] not in (str(runs_as.uid), runs_as.name):
                yield Finding("user-model", stack.name, name,
                              f"runs as {user or 'the image default'}; the design's user is {runs_as.name} ({runs_as.uid})")
        elif user is not None:
            yield Finding("user-model", stack.name, name,
                          f"sets user {user}; the image starts as root and switches to {runs_as.name} ({runs_as.uid}) itself")


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
def restart_and_logs(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Every service restarts by policy and keeps bounded json-file logs."""
    for stack, name, spec in _services(manifest):
        if not RESTART_POLICIES.fullmatch(str(spec.get("restart", ""))):
            yield Finding("restart-policy", stack.name, name, f"restart is {spec.get('restart', 'unset')!r}")
        logging = spec.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file" or not options.get("max-size") or not options.get("max-file"):
            yield Finding("bounded-logs", stack.name, name, "needs logging driver json-file with max-size and max-file")


@rule
def pinned_images(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    for stack, name, spec in _services(manifest):
        image = str(spec.get("image", ""))
        if "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest":
            yield Finding("pinned-image", stack.name, name, f"image {image or '(none)'} is not pinned to a version")


@rule
def single_file_mounts(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Managed files are replaced by rename: a container must mount their folder, not the file."""
    managed = {item.path for item in manifest.files}
    for stack, name, spec in _services(manifest):
        for source, _target, _ro in _mounts(spec):
            if source in managed:
                yield Finding("single-file-mount", stack.name, name,
                              f"mounts the managed file {source}; mount its folder (a rename leaves the old inode)")


@rule
def disk_budget(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """The retention caps and container log caps together fit the Docker disk budget."""
    storage = hub.storage
    volumes = sum(hub.volume_caps().values())
    logs = 0
    for _stack, _name, spec in _services(manifest):
        options = (spec.get("logging") or {}).get("options") or {}
        if options.get("max-size") and options.get("max-file"):
            logs += parse_size(str(options["max-size"])) * int(options["max-file"])
    budget = parse_size(storage.docker_disk) * storage.docker_disk_budget_percent // 100
    if volumes + logs > budget:
        yield Finding("disk-budget", "", "", f"volume caps {volumes / 2**30:.1f} GiB + log caps {logs / 2**30:.1f} GiB "
                      f"exceed {storage.docker_disk_budget_percent}% of the {storage.docker_disk} Docker disk")


@rule
def published_ports(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Only the reverse proxy publishes on every interface; Docker's rules bypass host firewalls."""
    proxy = hub.reverse_proxy.nginx.container.container_name
    for stack, name, spec in _services(manifest):
        if spec.get("container_name") == proxy:
            continue
        for port in spec.get("ports") or []:
            text = str(port)
            if not (text.startswith("127.") or text.startswith("[::1]")):
                yield Finding("published-port", stack.name, name,
                              f"publishes {text} on every interface; bind it to 127.0.0.1", "warning")


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


def _end_of_life(manifest: Manifest, today: dt.date) -> Iterator[Finding]:
    for stack, name, spec in _services(manifest):
        image = str(spec.get("image", ""))
        for prefix, date, advice in END_OF_LIFE:
            if image.startswith(prefix) and today >= date:
                yield Finding("end-of-life", stack.name, name, f"{image}: {advice} (since {date})", "warning")
