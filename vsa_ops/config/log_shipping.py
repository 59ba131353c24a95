"""The log shipper (design: "Promtail", scrape jobs table): its jobs, the Loki labels each job sets and the
field each label is read from. Both templates (Promtail and Alloy) render the jobs from here."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import field_validator, model_validator

from .base import AbsPath, Model, matching
from .component import Component
from .containers import Container, RunAs
from .storage import OBSERVABILITY, REVERSE_PROXY, ROOT

# Every distinct label set is one Loki stream, and Loki 3.0 refuses new streams past
# max_global_streams_per_user (5,000): a label fed from a field with unbounded values (client address, URI,
# user agent, request id, timings) stops the logs on a busy day. These are the only fields a job may turn
# into labels, each with why its values are few; everything else stays in the line (LogQL `| json`).
BOUNDED_FIELDS: dict[str, dict[str, str]] = {
    "file": {
        "domain": "NGINX $host in a per-domain log: the names of that vhost",
        "method": "HTTP method; the label keeps only the standard methods (NGINX accepts any token)",
        "status": "HTTP status code, 100-599; labelled as its class (2xx, 4xx...)",
        "level": "log level",
        "actor": "audit: the operators running vsa-ops",
        "action": "audit: the vsa-ops actions",
        "result": "audit: ok, failed, rolled_back",
        "vps_id": "audit: the host",
    },
    "journal": {
        "__journal__systemd_unit": "the host's systemd units",
        "__journal_priority_keyword": "syslog priority (emerg ... debug)",
    },
    "docker": {
        "__meta_docker_container_name": "the hub's containers",
        "__meta_docker_container_label_com_docker_compose_service": "compose services",
        "__meta_docker_container_label_com_docker_compose_project": "compose projects",
        "__meta_docker_container_log_stream": "stdout or stderr",
    },
}
# Where each kind of job reads its label fields: JSON keys of the line, or the shipper's meta labels.
# A docker job reads only per-container fields (not the per-network or per-port ones Docker discovery
# also gives): its targets are narrowed to these before Alloy reads them, which keeps Alloy's position
# keys computable from `docker inspect` (vsa_ops/shipper_positions.py).
_FIELD_PREFIX = {"file": "", "journal": "__journal_", "docker": "__meta_docker_container_"}
DOCKER_LOG_STREAM = "__meta_docker_container_log_stream"  # set per line by the source, not discovered
HTTP_METHODS = "(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS|CONNECT|TRACE)"
IDENTITY = ("(.*)", "$1")
Identifier = matching(r"[A-Za-z_][A-Za-z0-9_]*", "must be letters, digits and _ (a Loki label name or a field name)")


class ShipLabel(Model):
    """A Loki label and the field that feeds it, with Prometheus relabel semantics: the field's whole value
    must match ``regex`` (else the entry gets no such label) and the label is ``replacement``, where $1 is
    the regex's first group."""

    name: Identifier
    field: Identifier
    regex: str = IDENTITY[0]
    replacement: str = IDENTITY[1]

    @model_validator(mode="before")
    @classmethod
    def _named_after_its_field(cls, data):
        return {"name": data, "field": data} if isinstance(data, str) else data

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"is not a regular expression: {error}") from None
        return value

    @property
    def rewrites(self) -> bool:
        return (self.regex, self.replacement) != IDENTITY

    @property
    def pipeline_template(self) -> str:
        """The Go template a pipeline's template stage applies to the matched value (relabel's replacement);
        an empty result removes the value, so an entry that did not match gets no label."""
        return f'{{{{ if .Value }}}}{{{{ regexReplaceAll "^(?:{_go_string(self.regex)})$" .Value ' \
               f'"{_go_string(self.replacement)}" }}}}{{{{ end }}}}'


def _go_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class ShipJob(Model):
    """A log shipper scrape job (design: "Promtail", scrape jobs table)."""

    job_name: str
    source: Literal["journal", "file", "docker"]
    path: str | None = None
    # A file job that reads the audit trail's JSONL: its path is vsa.audit.jsonl (``path`` stays unset).
    audit_trail: bool = False
    format: Literal["json", "raw"] = "raw"
    labels: list[ShipLabel] = []

    @model_validator(mode="after")
    def _fields_fit_the_source(self) -> "ShipJob":
        if self.audit_trail and (self.source != "file" or self.path is not None):
            raise ValueError("audit_trail is for a file job without path: it reads vsa.audit.jsonl")
        if (self.source in ("file", "journal")) != (self.path is not None or self.audit_trail):
            raise ValueError("path is required for file and journal jobs, and only for them")
        if self.source == "file" and self.labels and self.format != "json":
            raise ValueError("labels of a file job are read from JSON lines: set format json")
        prefix = _FIELD_PREFIX[self.source]
        for label in self.labels:
            if not label.field.startswith(prefix) or (not prefix and label.field.startswith("__")):
                raise ValueError(f"label {label.name}: a {self.source} job reads its fields from "
                                 + (f"meta labels {prefix}*" if prefix else "the line's JSON keys"))
        return self

    @property
    def alloy_id(self) -> str:
        """The label of this job's Alloy components (``loki.source.file "<alloy_id>"``...)."""
        return self.job_name.replace("-", "_")

    @property
    def alloy_component(self) -> str:
        """The Alloy component that keeps this job's positions (in ``<storage.path>/<component>/``)."""
        return f"loki.source.{self.source}.{self.alloy_id}"

    @property
    def discovered_fields(self) -> list[str]:
        """A docker job's target labels: the container id (Alloy's tailer needs it) and the fields its
        labels read, the per-line log stream aside."""
        used = [label.field for label in self.labels if label.field != DOCKER_LOG_STREAM]
        return ["__meta_docker_container_id", *dict.fromkeys(used)]

    def unbounded_labels(self) -> list[ShipLabel]:
        """Labels fed from a field not known to have few values (BOUNDED_FIELDS)."""
        return [label for label in self.labels if label.field not in BOUNDED_FIELDS[self.source]]


_SHIPPER_IMAGES = {"promtail": "grafana/promtail:3.0.0", "alloy": "grafana/alloy:v1.5.1"}
_SHIPPER_CONFIG = {"promtail": "promtail-config.yml", "alloy": "config.alloy"}
# Both shippers keep their read positions here, on the obs-promtail-data volume (README "Log shipping").
STATE_DIR = "/var/lib/promtail"


class LogShipper(Component):
    """The log shipper. The design's Promtail reached end of life on 2026-03-02; ``kind: alloy``
    swaps in Grafana Alloy with the same jobs and labels; the deploy carries the read positions over."""

    kind: Literal["promtail", "alloy"] = "promtail"
    container: Container = Container(
        image=_SHIPPER_IMAGES["promtail"],
        container_name="promtail",
        runs_as=RunAs(name="root", uid=0),
        mounts=[
            f"{OBSERVABILITY}/log-shipper:/etc/log-shipper:ro",
            f"obs-promtail-data:{STATE_DIR}",
            "/var/log/journal:/var/log/journal:ro",
            # The journal reader finds the host's journal folder (/var/log/journal/<machine id>) by it.
            "/etc/machine-id:/etc/machine-id:ro",
            # Logs, read as they grow: a change under these needs no restart. Only the log folders, not
            # all of /srv/flowbiz (its secrets, htpasswd files and private keys); a project stack whose
            # logs it should read adds its own folder. The audit log's folder is added from vsa.audit.
            {"source": f"{REVERSE_PROXY}/logs", "target": f"{REVERSE_PROXY}/logs", "read_only": True, "live": True},
            "/var/run/docker.sock:/var/run/docker.sock:ro",
        ],
        networks=["observability_internal"],
        # Reads NGINX's logs (owned by nginx, 0640) as root without owning them.
        cap_add=["DAC_READ_SEARCH"],
        root_access_reason="the Docker socket: container log discovery (docker_sd)",
    )
    loki_push_url: str = "http://loki:3100/loki/api/v1/push"
    # Where either shipper serves its /metrics (Prometheus scrapes <container_name>:<http_port>).
    http_port: int = 9080
    # Promtail's positions file, and Alloy's --storage.path (one folder per component) beside it. A deploy
    # that changes ``kind`` carries the old shipper's positions over to the new one (vsa_ops/shipper_positions.py).
    state_dir: AbsPath = STATE_DIR
    # Alloy: where a file with no recorded position starts. The cut-over records a position for every file
    # the old shipper read, so such a file is one created since (a new domain's log, one rotated during the
    # swap): read from its start, as Promtail does, nothing written to it is dropped.
    tail_from_end: bool = False
    # Design: Promtail "Scrape jobs" table, with labels only from bounded fields (README "Log shipping").
    jobs: list[ShipJob] = [
        ShipJob(job_name="system-journal", source="journal", path="/var/log/journal",
                labels=[ShipLabel(name="systemd_unit", field="__journal__systemd_unit")]),
        ShipJob(job_name="nginx-access", source="file", path=f"{ROOT}/*/logs/nginx/access*.log", format="json",
                labels=[ShipLabel(name="method", field="method", regex=HTTP_METHODS),
                        ShipLabel(name="status_class", field="status", regex="([1-5])[0-9][0-9]",
                                  replacement="${1}xx")]),
        # The reverse proxy's own logs (default servers, NGINX's error log): its log folder is mounted at
        # /var/log/nginx, so they are not under the design's */logs/nginx/ globs above.
        ShipJob(job_name="nginx-proxy-access", source="file", path=f"{ROOT}/reverse-proxy/logs/access*.log",
                format="json", labels=[ShipLabel(name="method", field="method", regex=HTTP_METHODS),
                                       ShipLabel(name="status_class", field="status", regex="([1-5])[0-9][0-9]",
                                                 replacement="${1}xx")]),
        ShipJob(job_name="nginx-proxy-error", source="file", path=f"{ROOT}/reverse-proxy/logs/error*.log"),
        ShipJob(job_name="nginx-domain-access", source="file", format="json",
                path=f"{ROOT}/reverse-proxy/logs/domains/*.access.json",
                labels=[ShipLabel(name="domain", field="domain"),
                        ShipLabel(name="method", field="method", regex=HTTP_METHODS),
                        ShipLabel(name="status_class", field="status", regex="([1-5])[0-9][0-9]",
                                  replacement="${1}xx")]),
        ShipJob(job_name="nginx-error", source="file", path=f"{ROOT}/*/logs/nginx/error*.log"),
        ShipJob(job_name="vsa-audit", source="file", audit_trail=True, format="json",
                labels=["actor", "action", "result", "vps_id"]),
        ShipJob(job_name="docker-containers", source="docker", labels=[
            ShipLabel(name="container", field="__meta_docker_container_name", regex="/(.*)"),
            ShipLabel(name="compose_service", field="__meta_docker_container_label_com_docker_compose_service"),
            ShipLabel(name="compose_project", field="__meta_docker_container_label_com_docker_compose_project"),
            ShipLabel(name="stream", field="__meta_docker_container_log_stream"),
        ]),
    ]

    @model_validator(mode="before")
    @classmethod
    def _image_follows_kind(cls, data):
        # kind alloy with Promtail's image and name still in place swaps in Alloy's.
        if isinstance(data, dict) and data.get("kind") == "alloy" and isinstance(data.get("container"), dict):
            container = dict(data["container"])
            if container.get("image", _SHIPPER_IMAGES["promtail"]) == _SHIPPER_IMAGES["promtail"]:
                container["image"] = _SHIPPER_IMAGES["alloy"]
            if container.get("container_name", "promtail") == "promtail":
                container["container_name"] = "alloy"
            data = {**data, "container": container}
        return data

    @model_validator(mode="after")
    def _positions_persist(self) -> "LogShipper":
        # Positions lost with the container would make the next shipper re-read every file.
        if not any(m.target == self.state_dir and not m.is_bind for m in self.container.mounts):
            raise ValueError(f"state_dir {self.state_dir} must be the target of a named volume in container.mounts")
        return self

    @property
    def config_file(self) -> str:
        return _SHIPPER_CONFIG[self.kind]

    @property
    def positions_file(self) -> str:
        """Promtail's positions (Alloy's loki.source.file components also convert it on a first start that
        finds no positions of their own: a swap made by hand)."""
        return f"{self.state_dir}/positions.yaml"

    def derived_command(self) -> list[str]:
        if self.kind == "alloy":
            return ["run", f"--storage.path={self.state_dir}", f"--server.http.listen-addr=0.0.0.0:{self.http_port}",
                    "/etc/log-shipper/config.alloy"]
        return ["-config.file=/etc/log-shipper/promtail-config.yml"]
