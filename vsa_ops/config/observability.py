"""The observability stack: the design's "Observability Stack Internals"."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Duration, Model, Size
from .component import Component
from .containers import Container, RunAs
from .log_shipping import LogShipper
from .storage import OBSERVABILITY

INTERNAL = ["observability_internal"]


class ScrapeJob(Model):
    job_name: str
    targets: list[str]


class Prometheus(Component):
    """Design: "Prometheus (prom/prometheus:v2.53.0)"."""

    container: Container = Container(
        image="prom/prometheus:v2.53.0",
        container_name="prometheus",
        runs_as=RunAs(name="nobody", uid=65534),
        mounts=[f"{OBSERVABILITY}/prometheus:/etc/prometheus:ro", "obs-prometheus-data:/prometheus"],
        networks=INTERNAL,
        validate_command=["promtool", "check", "config", "/etc/prometheus/prometheus.yml"],
    )
    scrape_interval: Duration = "15s"
    retention_time: Duration = "15d"
    retention_size: Size = "1GB"
    external_url: str = "https://prometheus.flowbiz.ai"
    route_prefix: str = "/"
    # Design: "Scrape targets (15s interval)".
    scrape_jobs: list[ScrapeJob] = [
        ScrapeJob(job_name="prometheus", targets=["prometheus:9090"]),
        ScrapeJob(job_name="loki", targets=["loki:3100"]),
        ScrapeJob(job_name="grafana", targets=["grafana:3000"]),
        ScrapeJob(job_name="promtail", targets=["promtail:9080"]),
        ScrapeJob(job_name="node-exporter", targets=["node-exporter:9100"]),
        ScrapeJob(job_name="cadvisor", targets=["cadvisor:8080"]),
    ]

    def derived_command(self) -> list[str]:
        return [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={self.retention_time}",
            f"--storage.tsdb.retention.size={self.retention_size}",
            f"--web.external-url={self.external_url}",
            f"--web.route-prefix={self.route_prefix}",
        ]


class Loki(Component):
    """Design: "Loki (grafana/loki:3.0.0)", filesystem storage with the BoltDB shipper."""

    container: Container = Container(
        image="grafana/loki:3.0.0",
        container_name="loki",
        runs_as=RunAs(name="loki", uid=10001),
        command=["-config.file=/etc/loki/loki-config.yml"],
        mounts=[f"{OBSERVABILITY}/loki:/etc/loki:ro", "obs-loki-data:/loki"],
        # Not on flowbiz_ext (the design puts it there): Loki runs without auth (auth_enabled: false),
        # so any app container on the shared network could read and write every log. Grafana, the
        # shipper and Prometheus reach it on observability_internal (README "Least privilege").
        networks=["observability_internal"],
    )
    store: Literal["boltdb-shipper", "tsdb"] = "boltdb-shipper"
    schema_version: Literal["v11", "v12", "v13"] = "v12"
    schema_from: str = "2024-01-01"
    index_period: Literal["24h"] = "24h"
    retention_enabled: bool = True
    retention_period: Duration = "30d"
    compaction_interval: Duration = "10m"
    retention_delete_delay: Duration = "2h"
    retention_delete_worker_count: int = Field(150, ge=1)
    # Loki 3 refuses retention without it (reliability.md section 4.1).
    delete_request_store: Literal["filesystem"] | None = "filesystem"

    @property
    def allow_structured_metadata(self) -> bool:
        """Loki 3 accepts structured metadata only with the tsdb index and schema v13."""
        return self.store == "tsdb" and self.schema_version == "v13"


class Datasource(Model):
    name: str
    type: Literal["prometheus", "loki"]
    url: str
    is_default: bool = False


class Grafana(Component):
    """Design: "Grafana (grafana/grafana:10.4.0)", provisioned from YAML."""

    container: Container = Container(
        image="grafana/grafana:10.4.0",
        container_name="grafana",
        runs_as=RunAs(name="grafana", uid=472),
        environment={"GF_SECURITY_ADMIN_USER": "admin",
                     "GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/secrets/grafana_admin_password"},
        mounts=[
            f"{OBSERVABILITY}/data/grafana-provisioning:/etc/grafana/provisioning:ro",
            f"{OBSERVABILITY}/secrets:/run/secrets:ro",
            "obs-grafana-data:/var/lib/grafana",
        ],
        # Design: "grafana (port 3010→3000)"; bound to loopback, NGINX is the public entry.
        ports=["127.0.0.1:3010:3000"],
        networks=["flowbiz_ext", "observability_internal"],
    )
    datasources: list[Datasource] = [
        Datasource(name="Prometheus", type="prometheus", url="http://prometheus:9090", is_default=True),
        Datasource(name="Loki", type="loki", url="http://loki:3100"),
    ]
    dashboards_folder: str = "VSA"


class NodeExporter(Component):
    container: Container = Container(
        image="prom/node-exporter:v1.8.1",
        container_name="node-exporter",
        runs_as=RunAs(name="nobody", uid=65534),
        command=["--path.rootfs=/host"],
        mounts=[{"source": "/", "target": "/host", "read_only": True, "propagation": "rslave", "live": True}],
        networks=INTERNAL,
    )


class Cadvisor(Component):
    container: Container = Container(
        image="gcr.io/cadvisor/cadvisor:v0.49.1",
        container_name="cadvisor",
        runs_as=RunAs(name="root", uid=0),
        privileged=True,
        cap_drop=[],
        root_access_reason="design: cAdvisor is privileged to read every container's cgroups and the host's devices",
        mounts=[{"source": source, "target": target, "read_only": True, "live": True} for source, target in (
            ("/", "/rootfs"), ("/var/run", "/var/run"), ("/sys", "/sys"), ("/var/lib/docker", "/var/lib/docker"),
            ("/dev/disk", "/dev/disk"))],
        networks=INTERNAL,
    )


class Observability(Model):
    prometheus: Prometheus = Prometheus()
    loki: Loki = Loki()
    log_shipper: LogShipper = LogShipper()
    grafana: Grafana = Grafana()
    node_exporter: NodeExporter = NodeExporter()
    cadvisor: Cadvisor = Cadvisor()
