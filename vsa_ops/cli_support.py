"""What every vsa-ops command shares: one-line errors and the common options."""

from __future__ import annotations

import sys

import click

from .audit import AuditError
from .config import ConfigError
from .domains import RegistryError
from .htpasswd import PasswordError
from .inventory import InventoryError
from .lab.hosts import LabError
from .plan import PlanError
from .render import RenderError
from .sites import DomainError

# Mistakes of input or environment: one line each on stderr, exit 1, never a traceback.
USER_ERRORS = (ConfigError, InventoryError, RenderError, FileNotFoundError, ValueError, LabError, DomainError,
               RegistryError, PasswordError, PlanError, AuditError)


class Command(click.Group):
    """A command group whose known mistakes end as short messages on stderr and exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            for line in str(error).splitlines():
                click.echo(f"vsa-ops: {line}", err=True)
            sys.exit(1)


inventory_option = click.option("-i", "--inventory", "inventory", default=None, metavar="INVENTORY",
                                help="pyinfra inventory file (default: $VSA_INVENTORY or inventory.py).")
host_option = click.option("--host", "host_name", default=None, metavar="NAME", help="Only this host.")
