"""What every vsa-ops command shares: one-line errors and the common options."""

from __future__ import annotations

import sys

import click

from .errors import VsaError


class Command(click.Group):
    """A command group whose expected failures (VsaError) end as short messages on stderr and exit 1;
    anything else is a bug and keeps its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VsaError as error:
            for line in str(error).splitlines():
                click.echo(f"vsa-ops: {line}", err=True)
            sys.exit(1)


inventory_option = click.option("-i", "--inventory", "inventory", default=None, metavar="INVENTORY",
                                help="pyinfra inventory file (default: $VSA_INVENTORY or inventory.py).")
# One meaning for every command that acts on hosts: --limit names a host or a group of the inventory.
limit_option = click.option("--limit", "limit", default=None, metavar="HOST|GROUP",
                            help="Only this host, or the hosts of this group.")
