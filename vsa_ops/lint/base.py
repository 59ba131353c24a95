"""What every lint rule shares: findings, the rule registry, and reading services, networks and mounts
out of a manifest."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..config import HubConfig
from ..manifest import Manifest, Stack
from ..render.compose import ROOT_ACCESS_LABEL

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


def _root_access_reason(spec: dict[str, Any]) -> str:
    labels = spec.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(str(item).partition("=")[::2] for item in labels)
    return str(labels.get(ROOT_ACCESS_LABEL, "")).strip()


def _end_of_life(manifest: Manifest, today: dt.date) -> Iterator[Finding]:
    for stack, name, spec in _services(manifest):
        image = str(spec.get("image", ""))
        for prefix, date, advice in END_OF_LIFE:
            if image.startswith(prefix) and today >= date:
                yield Finding("end-of-life", stack.name, name, f"{image}: {advice} (since {date})", "warning")
