"""The dashboard stack: the design's "Dashboard Stack Internals"."""

from __future__ import annotations

import re

from pydantic import field_validator

from .base import Model
from .component import Component
from .containers import Container, Healthcheck, RunAs
from .storage import DASHBOARD, REVERSE_PROXY

SECRETS = f"{DASHBOARD}/secrets:/run/secrets:ro"


class Postgres(Component):
    """Design: "PostgreSQL 16", data bind-mounted, only on dashboard-net (reliability.md 7.1)."""

    container: Container = Container(
        image="postgres:16",
        container_name="dashboard-postgres",
        # Set in compose: the image's entrypoint, started as root, would drop to postgres with that
        # account's groups only, losing the secret reader's group (group_add) it reads its password with.
        runs_as=RunAs(name="postgres", uid=999),
        environment={
            "POSTGRES_USER": "dashboard",
            "POSTGRES_DB": "dashboard",
            "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
            "POSTGRES_INITDB_ARGS": "--data-checksums",
        },
        mounts=[f"{DASHBOARD}/data/postgres:/var/lib/postgresql/data", SECRETS],
        networks=["dashboard-net"],
        healthcheck=Healthcheck(test=["CMD", "pg_isready", "-U", "dashboard", "-d", "dashboard"]),
        stop_grace_period="60s",
        shm_size="256MB",
        # The entrypoint, as root, chowns the data folder and drops to postgres.
        cap_add=["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
    )
    database: str = "dashboard"
    user: str = "dashboard"

    def rotate_password_script(self, password_file: str) -> str:
        """Shell run inside the running container (as root) when the password file changed: the role
        takes the file's value. psql connects over the local socket (the image trusts it), reads the
        file itself (a psql backtick: never on a command line) and its output is dropped, since an
        error could quote the statement."""
        return (f"psql -v ON_ERROR_STOP=1 -X -q -U {self.user} -d {self.database} >/dev/null 2>&1 <<'VSA_SQL' "
                f"|| {{ echo 'psql: ALTER ROLE {self.user} failed (output hidden: it may quote the password)' >&2; "
                f"exit 1; }}\n"
                f"\\set pw `cat {password_file}`\n"
                f"ALTER ROLE \"{self.user}\" PASSWORD :'pw';\n"
                "VSA_SQL")

    @field_validator("database", "user")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError("must be a lowercase PostgreSQL identifier")
        return value


class Api(Component):
    """Design: "Dashboard API (FastAPI)" and its read-only mounts."""

    container: Container = Container(
        image="flowbiz/vps-admin-api:0.1.0",
        container_name="dashboard-api",
        # Design: "non-root, configured in Dockerfile"; the uid owns its password file.
        runs_as=RunAs(name="dashboard", uid=1000, set_in_compose=False),
        environment={
            "DATABASE_HOST": "dashboard-postgres",
            "DATABASE_PASSWORD_FILE": "/run/secrets/api_database_password",
        },
        # Design: "Read-only mounts". The API reads them as they change. The audit folders are added
        # from vsa.audit (HubConfig.builtin_stacks).
        mounts=[
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            {"source": f"{REVERSE_PROXY}/letsencrypt", "target": "/etc/letsencrypt", "read_only": True, "live": True},
            {"source": f"{REVERSE_PROXY}/nginx/conf.d", "target": "/etc/nginx/conf.d", "read_only": True,
             "live": True},
            SECRETS,
        ],
        networks=["flowbiz_ext", "dashboard-net"],
        depends_on=["postgres"],
        root_access_reason="design: the Docker socket for container introspection (Docker SDK)",
    )


class Ui(Component):
    container: Container = Container(
        image="flowbiz/vps-admin-ui:0.1.0",
        container_name="dashboard-ui",
        runs_as=RunAs(name="dashboard", uid=1000, set_in_compose=False),
        networks=["flowbiz_ext", "dashboard-net"],
        depends_on=["api"],
    )


class Dashboard(Model):
    postgres: Postgres = Postgres()
    api: Api = Api()
    ui: Ui = Ui()
