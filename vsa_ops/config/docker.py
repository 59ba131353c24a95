"""The Docker engine's own settings (/etc/docker/daemon.json)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .base import Model, Size


class DockerDaemon(Model):
    """daemon.json; reliability.md section 5.1 (CIS Docker Benchmark, section 2)."""

    log_driver: str = "json-file"
    log_max_size: Size = "10m"
    log_max_file: int = Field(3, ge=1)
    live_restore: bool = True
    # Off: the userland proxy hides client addresses from NGINX, so every client would share one
    # rate-limit bucket (reliability.md section 2).
    userland_proxy: bool = False
    storage_driver: str | None = None
    extra: dict[str, Any] = {}
    # What `docker compose up` does about images the host lacks after vsa-ops shipped what the
    # controller has: pull them from their registry ("missing"), or fail ("never").
    pull: Literal["missing", "never"] = "missing"

    def daemon_json(self) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "log-driver": self.log_driver,
            "log-opts": {"max-size": self.log_max_size, "max-file": str(self.log_max_file)},
            "live-restore": self.live_restore,
            "userland-proxy": self.userland_proxy,
        }
        if self.storage_driver:
            settings["storage-driver"] = self.storage_driver
        return settings | self.extra
