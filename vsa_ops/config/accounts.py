"""Accounts that own secrets: one named system group (and account of the same id, no login) per
container that reads a password file. The files are ``root:<group> 0640`` and the container gets the
group through compose's ``group_add``, so no other account of the host (such as the uid-1000 login
user of cloud images, which shares its id with the dashboard image's user) can read them. vsa-ops
picks the ids; a deploy refuses when one is taken by an account or group of another name."""

from __future__ import annotations

from pydantic import Field, field_validator

from .base import Model

# Names vsa-ops creates for secret readers start with this: an existing account or group with the id
# and another name is someone else's, and vsa-ops refuses rather than share a secret with it.
PREFIX = "vsa-"


class SecretReader(Model):
    name: str
    # Debian's range for system ids allocated on demand (60000-64999): no installer picks them.
    gid: int = Field(ge=100, le=64999)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.startswith(PREFIX) or not value.replace("-", "").isalnum() or len(value) > 32:
            raise ValueError(f"must start with {PREFIX!r} and hold letters, digits and '-' only (at most 32)")
        return value


class SecretReaders(Model):
    """Who may read each password file: the container that needs it, through this group."""

    dashboard_postgres: SecretReader = SecretReader(name="vsa-dashboard-db", gid=64901)
    dashboard_api: SecretReader = SecretReader(name="vsa-dashboard-api", gid=64902)
    grafana: SecretReader = SecretReader(name="vsa-grafana", gid=64903)

    def all(self) -> list[SecretReader]:
        return [self.dashboard_postgres, self.dashboard_api, self.grafana]
