"""Backups (issue 13): what the ``backup`` stack saves, where (a restic repository), how long and how
often. Backups are off until ``repository`` is set; then the ``backup`` stack runs a loop container."""

from __future__ import annotations

import posixpath
import re

from pydantic import Field, field_validator, model_validator

from .base import Duration, Model, parse_duration
from .component import Component
from .containers import Container, RunAs
from .storage import REVERSE_PROXY, ROOT

BACKUP = f"{ROOT}/backup"
# Where the backup container sees what it saves (and what a restore writes back).
STAGING = "/staging"
LETSENCRYPT = "/data/letsencrypt"
GRAFANA = "/data/grafana"
PROMETHEUS = "/data/prometheus"
LOKI = "/data/loki"
TEXTFILE = "/textfile"
# The stack's folder (script, host name, secrets), read-only in the container.
ETC = "/etc/vsa-backup"
SCRIPT = f"{ETC}/vsa-backup.sh"

_SFTP = re.compile(r"sftp:(?P<user>[a-z_][a-z0-9_.-]{0,31})@(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?:"
                   r"(?P<path>/?[A-Za-z0-9._/-]+)")
_S3 = re.compile(r"s3:(https?://)?[A-Za-z0-9.-]+(:\d{1,5})?/[a-z0-9][a-z0-9.-]{1,62}(/[A-Za-z0-9._/-]+)?")
_LOCAL = re.compile(r"(local:)?/[A-Za-z0-9._/-]+")


class Retention(Model):
    """``restic forget --prune --keep-daily D --keep-weekly W --keep-monthly M``."""

    daily: int = Field(7, ge=0, le=3650)
    weekly: int = Field(4, ge=0, le=520)
    monthly: int = Field(6, ge=0, le=1200)

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if not (self.daily or self.weekly or self.monthly):
            raise ValueError("keeps no snapshot at all: set at least one of daily, weekly, monthly above 0")
        return self

    @property
    def forget_flags(self) -> list[str]:
        return [f"--keep-{name}={getattr(self, name)}" for name in ("daily", "weekly", "monthly")
                if getattr(self, name)]


class Include(Model):
    """Optional data: large, and recreated by scraping and shipping again."""

    prometheus: bool = False
    loki: bool = False


class Runner(Component):
    """The loop container: ``vsa-backup loop`` runs a backup every ``interval``. It reaches the Docker
    socket (``pg_dump`` by ``docker exec`` in the running PostgreSQL, the stops of a restore): that is
    root on the host, like the dashboard API's socket. The mounts are read-write because ``restore``
    writes back through the same container; a backup only reads them."""

    container: Container = Container(
        image="flowbiz/vsa-backup:1",
        container_name="backup-restic",
        # root: it reads and restores files of every other container's user
        runs_as=RunAs(name="root", uid=0, set_in_compose=False),
        entrypoint=["/bin/sh", SCRIPT],
        command=["loop"],
        mounts=[
            # :ro (lint docker-socket-ro) changes nothing for the API: the socket is root on the host
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            f"{BACKUP}:{ETC}:ro",
            f"{BACKUP}/staging:{STAGING}",
            f"{REVERSE_PROXY}/letsencrypt:{LETSENCRYPT}",
            f"obs-grafana-data:{GRAFANA}",
        ],
        # no-new-privileges stays. A restore writes files back with their owners and modes (restic's
        # lchown, cp -a) into folders other users own: CHOWN, FOWNER and DAC_OVERRIDE, nothing else.
        cap_add=["CHOWN", "FOWNER", "DAC_OVERRIDE"],
        mem_limit="512m",
    )


class Backup(Model):
    """``repository``: a restic repository, one of ``/path`` (or ``local:/path``) on the host,
    ``sftp:user@host:/path`` (``sftp:user@host:port:/path``), ``s3:https://endpoint/bucket/prefix``.
    None (the default): no backups, no backup stack. The repository's password and credentials are
    declared secrets (``vsa.secrets.backup_*``)."""

    repository: str | None = None
    retention: Retention = Retention()
    interval: Duration = "24h"
    # ``restic check`` at most this often (after a backup), reading the repository's structure.
    check_interval: Duration = "7d"
    include: Include = Include()
    runner: Runner = Runner()

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _LOCAL.fullmatch(value):
            path = value.removeprefix("local:")
            if "//" in path or ".." in path.split("/") or path.rstrip("/") == "" \
                    or f"{path}/".startswith(f"{ROOT}/"):
                raise ValueError(f"a local repository must be an absolute path outside {ROOT}, "
                                 "such as /var/backups/vsa-restic (no '..')")
            return value
        if value.startswith("sftp:"):
            match = _SFTP.fullmatch(value)
            if not match:
                raise ValueError("an SFTP repository is written sftp:USER@HOST:/PATH or sftp:USER@HOST:PORT:/PATH")
            if match["port"] and not 1 <= int(match["port"]) <= 65535:
                raise ValueError("the SFTP port must be 1..65535")
            return value
        if value.startswith("s3:"):
            if not _S3.fullmatch(value):
                raise ValueError("an S3 repository is written s3:https://ENDPOINT/BUCKET[/PREFIX]")
            return value
        raise ValueError("must be a restic repository: /PATH, sftp:USER@HOST:/PATH or s3:https://ENDPOINT/BUCKET")

    @model_validator(mode="after")
    def _check_not_more_often(self) -> Backup:
        if parse_duration(self.interval) < 600:
            raise ValueError(f"interval {self.interval!r}: at least 10m between scheduled backups")
        if parse_duration(self.check_interval) < parse_duration(self.interval):
            raise ValueError(f"check_interval {self.check_interval!r} is shorter than interval {self.interval!r}")
        return self

    @property
    def enabled(self) -> bool:
        return self.repository is not None

    @property
    def kind(self) -> str:
        """local, sftp or s3."""
        if self.repository is None:
            return "off"
        return self.repository.split(":", 1)[0] if self.repository.startswith(("sftp:", "s3:")) else "local"

    @property
    def restic_repository(self) -> str:
        """The repository as restic's ``-r`` takes it; a local one is mounted at /repository."""
        return "/repository" if self.kind == "local" else str(self.repository)

    def runner_with(self, audit_jsonl: str, audit_database: str, textfile: str, postgres_container: str,
                    postgres_user: str, postgres_database: str, restore_stops: list[str]) -> Runner:
        """The loop container with what the rest of the configuration decides: the repository and
        retention in its environment, the audit folders, the textfile folder, the optional volumes;
        ``restore_stops``: the containers a restore stops while it writes what they read."""
        container = self.runner.container
        mounts = [*container.mounts,
                  {"source": posixpath.dirname(audit_jsonl), "target": posixpath.dirname(audit_jsonl)},
                  {"source": posixpath.dirname(audit_database), "target": posixpath.dirname(audit_database)},
                  {"source": textfile, "target": TEXTFILE}]
        if self.kind == "local":
            mounts.append({"source": str(self.repository).removeprefix("local:"), "target": "/repository"})
        if self.include.prometheus:
            mounts.append({"source": "obs-prometheus-data", "target": PROMETHEUS, "read_only": True})
        if self.include.loki:
            mounts.append({"source": "obs-loki-data", "target": LOKI, "read_only": True})
        targets: dict[str, object] = {}
        for mount in mounts:
            target = mount.target if hasattr(mount, "target") else mount["target"]
            targets.setdefault(target, mount)
        environment = {
            "RESTIC_REPOSITORY": self.restic_repository,
            "RESTIC_PASSWORD_FILE": f"{ETC}/secrets/backup_password",
            "RESTIC_CACHE_DIR": f"{STAGING}/.cache",
            "VSA_BACKUP_KIND": self.kind,
            "VSA_BACKUP_INTERVAL": str(parse_duration(self.interval)),
            "VSA_BACKUP_CHECK_INTERVAL": str(parse_duration(self.check_interval)),
            "VSA_BACKUP_FORGET": " ".join(self.retention.forget_flags),
            "VSA_BACKUP_PATHS": " ".join([LETSENCRYPT, GRAFANA, *([PROMETHEUS] if self.include.prometheus else []),
                                          *([LOKI] if self.include.loki else [])]),
            "VSA_AUDIT_JSONL": audit_jsonl,
            "VSA_AUDIT_DATABASE": audit_database,
            "VSA_POSTGRES_CONTAINER": postgres_container,
            "VSA_POSTGRES_USER": postgres_user,
            "VSA_POSTGRES_DATABASE": postgres_database,
            "VSA_RESTORE_STOP": " ".join(restore_stops),
        }
        return self.runner.model_copy(update={"container": Container.model_validate(
            container.model_dump() | {"mounts": [m.model_dump() if hasattr(m, "model_dump") else m
                                                for m in targets.values()],
                                      "environment": environment | container.environment})})

    def secret_keys(self) -> list[str]:
        """The fields of ``vsa.secrets`` this repository needs (its password, and its credentials)."""
        return ["backup_password", *({"sftp": ["backup_ssh_key"],
                                      "s3": ["backup_s3_access_key_id", "backup_s3_secret_access_key"]}
                                     .get(self.kind, []))]
