"""Disks, the root-disk directory tree and the Docker volumes: the design's "Disk Layout"."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from .base import AbsPath, Mode, Model, Size


class FstabEntry(Model):
    """One /etc/fstab line, addressed by filesystem LABEL (design: "Disk Layout")."""

    label: str
    mountpoint: AbsPath
    fstype: str
    options: str = "defaults"
    dump: int = Field(0, ge=0, le=1)
    passno: int = Field(0, ge=0, le=2)

    @field_validator("label", "fstype", "options")
    @classmethod
    def _one_field(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.,=:/+-]+", value):
            raise ValueError("must be one fstab field: letters, digits and _.,=:/+- only")
        return value

    @property
    def spec(self) -> str:
        return f"LABEL={self.label}"

    @property
    def line(self) -> str:
        return f"{self.spec} {self.mountpoint} {self.fstype} {self.options} {self.dump} {self.passno}"


# Design, "Disk Layout": /etc/fstab.
DEFAULT_FSTAB = [
    FstabEntry(label="cloudimg-rootfs", mountpoint="/", fstype="ext4",
               options="discard,commit=30,errors=remount-ro", dump=0, passno=1),
    FstabEntry(label="docker", mountpoint="/var/lib/docker", fstype="ext4", options="defaults", dump=0, passno=2),
    FstabEntry(label="BOOT", mountpoint="/boot", fstype="ext4", options="defaults", dump=0, passno=2),
    FstabEntry(label="UEFI", mountpoint="/boot/efi", fstype="vfat", options="umask=0077", dump=0, passno=1),
]


class DirectorySpec(Model):
    """A directory on the root disk with its owner, group and mode.

    Owners and groups are names from the container user model (``nginx``, ``postgres``, ...) or
    ``root``; the render turns them into numeric ids so the host needs no matching account.
    """

    path: AbsPath
    owner: str = "root"
    group: str = "root"
    mode: Mode = "0755"
    purpose: str = ""
    # vsa-ops owns every file directly inside: a file the manifest does not name is removed.
    owned: bool = False
    # A container writes here (mounted read-write): vsa-ops, which runs as root, writes no file inside
    # (a container could swap such a file for a symlink to what root should never touch).
    container_data: bool = False


ROOT = "/srv/flowbiz"
REVERSE_PROXY = f"{ROOT}/reverse-proxy"
DASHBOARD = f"{ROOT}/dashboard"
OBSERVABILITY = f"{ROOT}/observability"
# Where the reverse proxy keeps each domain's files: render writes them, the deploy, the plan view and
# the listings find them here.
VHOSTS = f"{REVERSE_PROXY}/nginx/conf.d"
HTPASSWD = f"{REVERSE_PROXY}/nginx/auth"
CERTIFICATES = f"{REVERSE_PROXY}/letsencrypt/live"
# What root writes for certbot lives beside letsencrypt/ (which certbot writes), mounted read-only
# into the certbot container: its deploy hooks (at /etc/letsencrypt/renewal-hooks/deploy) and the
# ACME server's CA bundle. The hook's reload flag has a folder of its own, shared with the reloader.
CERTBOT_HOOKS = f"{REVERSE_PROXY}/certbot-hooks"
CERTBOT_CA = f"{REVERSE_PROXY}/certbot-ca"
RELOAD_FLAGS = f"{REVERSE_PROXY}/reload-flag"


def domain_files(name: str) -> dict[str, str]:
    """The files one domain owns on a host, by kind: its vhost and its htpasswd (when it has auth)."""
    return {"vhost": f"{VHOSTS}/{name}.conf", "htpasswd": f"{HTPASSWD}/{name}.htpasswd"}


def _tree() -> list[DirectorySpec]:
    rp, dash, obs = REVERSE_PROXY, DASHBOARD, OBSERVABILITY
    return [
        DirectorySpec(path=ROOT),
        # Design, "Root Disk": reverse proxy.
        DirectorySpec(path=rp),
        DirectorySpec(path=f"{rp}/nginx"),
        DirectorySpec(path=VHOSTS, purpose="NGINX vhost configs", owned=True),
        DirectorySpec(path=f"{rp}/nginx/snippets", purpose="Shared NGINX snippets", owned=True),
        DirectorySpec(path=HTPASSWD, group="nginx", mode="0750", purpose="htpasswd files (bcrypt)",
                  owned=True),
        DirectorySpec(path=f"{rp}/letsencrypt", purpose="Let's Encrypt certs + renewal configs", container_data=True),
        DirectorySpec(path=CERTBOT_HOOKS, purpose="certbot deploy hooks (read-only in certbot)", owned=True),
        DirectorySpec(path=CERTBOT_CA, purpose="ACME server CA bundle (read-only in certbot)", owned=True),
        DirectorySpec(path=RELOAD_FLAGS, purpose="certbot's 'reload NGINX' flag for the reloader", container_data=True),
        DirectorySpec(path=f"{rp}/certbot-www", purpose="ACME challenge webroot", container_data=True),
        DirectorySpec(path=f"{rp}/logs", owner="nginx", group="nginx", purpose="NGINX access/error logs",
                      container_data=True),
        DirectorySpec(path=f"{rp}/logs/domains", owner="nginx", group="nginx", purpose="per-domain JSON access logs",
                      container_data=True),
        # Design, "Root Disk": dashboard.
        DirectorySpec(path=dash),
        DirectorySpec(path=f"{dash}/data"),
        DirectorySpec(path=f"{dash}/data/postgres", owner="postgres", group="postgres", mode="0700",
                  purpose="PostgreSQL data directory", container_data=True),
        DirectorySpec(path=f"{dash}/secrets", mode="0751", purpose="database password files (each 0640, group of its reader)"),
        # Design, "Root Disk": observability; config folders follow "Configuration File Locations".
        DirectorySpec(path=obs),
        DirectorySpec(path=f"{obs}/data"),
        DirectorySpec(path=f"{obs}/data/grafana-provisioning", purpose="Grafana datasource/dashboard YAML"),
        DirectorySpec(path=f"{obs}/data/grafana-provisioning/datasources"),
        DirectorySpec(path=f"{obs}/data/grafana-provisioning/dashboards"),
        DirectorySpec(path=f"{obs}/prometheus", purpose="Prometheus scrape config"),
        DirectorySpec(path=f"{obs}/loki", purpose="Loki storage + retention config"),
        DirectorySpec(path=f"{obs}/log-shipper", purpose="Promtail (or Alloy) scrape jobs"),
        DirectorySpec(path=f"{obs}/secrets", mode="0751", purpose="Grafana admin password file (0640, group grafana)"),
        # The audit trail's folders follow vsa.audit (HubConfig.directories).
    ]


class Volume(Model):
    """A named Docker volume on the Docker disk (design: "Docker Disk")."""

    mount: AbsPath
    # What the volume may hold, for lint's Docker disk budget. A volume whose service enforces its own
    # cap (Prometheus: observability.prometheus.retention_size) takes that cap instead: one value, set
    # in one place (HubConfig.volume_caps).
    max_size: Size | None = None


# Design, "Docker Disk": volumes and size caps. Retention lives with the service that enforces it
# (observability.prometheus.retention_*, observability.loki.retention_period).
DEFAULT_VOLUMES = {
    "obs-prometheus-data": Volume(mount="/prometheus"),
    "obs-loki-data": Volume(mount="/loki", max_size="500MB"),
    "obs-grafana-data": Volume(mount="/var/lib/grafana", max_size="50MB"),
    "obs-promtail-data": Volume(mount="/var/lib/promtail", max_size="1MB"),
}


class Storage(Model):
    """Everything about disks: fstab, the root-disk tree and the Docker disk's volumes."""

    fstab: list[FstabEntry] = Field(default_factory=lambda: list(DEFAULT_FSTAB))
    extra_directories: list[DirectorySpec] = []
    volumes: dict[str, Volume] = Field(default_factory=lambda: dict(DEFAULT_VOLUMES))
    # Design: "Large dedicated disk (246G)". Lint checks that the retention caps fit in it.
    docker_disk: Size = "246GB"
    # Share of the Docker disk the retention caps and log caps may take together.
    docker_disk_budget_percent: int = Field(80, ge=1, le=100)

    @field_validator("fstab")
    @classmethod
    def _unique_mountpoints(cls, entries: list[FstabEntry]) -> list[FstabEntry]:
        seen: set[str] = set()
        for entry in entries:
            if entry.mountpoint in seen:
                raise ValueError(f"mount point {entry.mountpoint} appears twice")
            seen.add(entry.mountpoint)
        return entries

    @property
    def directories(self) -> list[DirectorySpec]:
        return _tree() + list(self.extra_directories)
