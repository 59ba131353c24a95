"""The observability stack: the design's "Observability Stack Internals"."""

from __future__ import annotations

import datetime
from typing import Literal

from pydantic import Field, field_validator

from .base import AbsPath, Duration, Model, Size
from .component import Component
from .containers import Container, Mount, RunAs
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
    # Design: "Scrape targets (15s interval)"; the log shipper's job is added from its kind
    # (Observability.scrape_jobs).
    scrape_jobs: list[ScrapeJob] = [
        ScrapeJob(job_name="prometheus", targets=["prometheus:9090"]),
        ScrapeJob(job_name="loki", targets=["loki:3100"]),
        ScrapeJob(job_name="grafana", targets=["grafana:3000"]),
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


class SchemaPeriod(Model):
    """One entry of Loki's schema_config: the index and schema of data written from ``start`` (UTC day)."""

    start: str
    store: Literal["boltdb-shipper", "tsdb"] = "tsdb"
    schema_version: Literal["v11", "v12", "v13"] = "v13"
    index_period: Literal["24h"] = "24h"

    @field_validator("start")
    @classmethod
    def _a_day(cls, value: str) -> str:
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a day, YYYY-MM-DD") from None
        return value


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
    # Design: BoltDB shipper, schema v12, 24h index period. Data keeps the schema it was written with:
    # a new schema is a new period appended with a later start, and the earlier ones stay as they are.
    schema_periods: list[SchemaPeriod] = [SchemaPeriod(start="2024-01-01", store="boltdb-shipper",
                                                       schema_version="v12")]
    retention_enabled: bool = True
    retention_period: Duration = "30d"
    compaction_interval: Duration = "10m"
    retention_delete_delay: Duration = "2h"
    retention_delete_worker_count: int = Field(150, ge=1)
    # Loki 3 refuses retention without it (reliability.md section 4.1).
    delete_request_store: Literal["filesystem"] | None = "filesystem"

    @field_validator("schema_periods")
    @classmethod
    def _periods_in_order(cls, periods: list[SchemaPeriod]) -> list[SchemaPeriod]:
        if not periods:
            raise ValueError("needs at least one period")
        starts = [p.start for p in periods]
        if starts != sorted(set(starts)):
            raise ValueError("periods must start on distinct days, earliest first (append a new one)")
        return periods

    @property
    def stores(self) -> set[str]:
        return {p.store for p in self.schema_periods}

    @property
    def allow_structured_metadata(self) -> bool:
        """Loki 3 refuses structured metadata unless its active period is tsdb + v13; which period is
        active depends on the day Loki starts, so it is allowed only once every period is."""
        return all(p.store == "tsdb" and p.schema_version == "v13" for p in self.schema_periods)


class Datasource(Model):
    name: str
    # The provisioned dashboards name their datasource by this uid.
    uid: str
    type: Literal["prometheus", "loki"]
    url: str
    is_default: bool = False


def grafana_reset_script(password_file: str) -> str:
    """Shell run inside the running Grafana container when its admin password file changed: the
    password from the file is set in Grafana's database (GF_SECURITY_ADMIN_PASSWORD__FILE is read only
    when that database is first made). Read from stdin: never on a command line."""
    return (f"grafana cli admin reset-admin-password --password-from-stdin < {password_file} >/dev/null 2>&1 "
            f"|| {{ echo 'grafana cli admin reset-admin-password failed' >&2; exit 1; }}")


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
        Datasource(name="Prometheus", uid="prometheus", type="prometheus", url="http://prometheus:9090",
                   is_default=True),
        Datasource(name="Loki", uid="loki", type="loki", url="http://loki:3100"),
    ]
    dashboards_folder: str = "VSA"


# Inside node-exporter: where its textfile collector reads vsa-ops' own facts (vsa_ops/metrics.py).
TEXTFILE_MOUNT = "/textfile"
# Inside the certbot container: where its renewal hook writes the certificates' expiry.
CERTBOT_TEXTFILE = "/var/lib/node_exporter/textfile_collector"


class NodeExporter(Component):
    container: Container = Container(
        image="prom/node-exporter:v1.8.1",
        container_name="node-exporter",
        runs_as=RunAs(name="nobody", uid=65534),
        mounts=[{"source": "/", "target": "/host", "read_only": True, "propagation": "rslave", "live": True}],
        networks=INTERNAL,
    )
    # On the host: vsa-ops (deploy, drift, add-domain) and the certbot renewal hook write *.prom files
    # here; node-exporter serves them with its own metrics.
    textfile_directory: AbsPath = "/var/lib/node_exporter/textfile_collector"

    def derived_command(self) -> list[str]:
        return ["--path.rootfs=/host", f"--collector.textfile.directory={TEXTFILE_MOUNT}"]

    @property
    def certbot_textfile(self) -> str:
        """The folder as the certbot container sees it (its renewal hook writes there)."""
        return CERTBOT_TEXTFILE

    def textfile_mount(self, target: str, writable: bool = False) -> Mount:
        return Mount(source=self.textfile_directory, target=target, read_only=not writable, live=True)


class Cadvisor(Component):
    container: Container = Container(
        image="gcr.io/cadvisor/cadvisor:v0.49.1",
        container_name="cadvisor",
        runs_as=RunAs(name="root", uid=0),
        privileged=True,
        # Containers only, sampled as often as Prometheus scrapes; of the containers' labels only the
        # compose ones become metric labels (each label is a series dimension).
        command=["--docker_only=true", "--housekeeping_interval=15s", "--store_container_labels=false",
                 "--whitelisted_container_labels=com.docker.compose.project,com.docker.compose.service"],
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

    def scrape_jobs(self) -> list[ScrapeJob]:
        """Prometheus' jobs: its own, then the log shipper in place (Promtail or Alloy, by kind)."""
        shipper = self.log_shipper
        jobs = [job for job in self.prometheus.scrape_jobs if job.job_name not in ("promtail", "alloy")]
        target = f"{shipper.container.container_name}:{shipper.http_port}"
        return [*jobs, ScrapeJob(job_name=shipper.kind, targets=[target])]
