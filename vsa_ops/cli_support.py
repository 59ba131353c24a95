"""What every vsa-ops command shares: one-line errors and the common options."""

from __future__ import annotations

import functools
import importlib
import sys

import click

from .errors import VsaError


class Command(click.Group):
    """A command group whose expected failures (VsaError) end as short messages on stderr and exit 1;
    anything else is a bug and keeps its traceback. Commands added with ``add_lazy`` are imported only
    when used (or listed by ``--help``): a command loads only the modules it needs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}  # command name -> "module:attribute" of the click command

    def add_lazy(self, name: str, target: str) -> None:
        self.lazy[name] = target

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.lazy:
            module, attribute = self.lazy[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except VsaError as error:
            for line in str(error).splitlines():
                click.echo(f"vsa-ops: {line}", err=True)
            sys.exit(1)


class LazyGroup(click.Group):
    """A group whose commands live in a module imported only when the group is used: the parent's
    ``--help`` lists it by ``short_help`` alone. The real group takes no options of its own."""

    def __init__(self, name: str, target: str, short_help: str):
        super().__init__(name, short_help=short_help)
        self.target = target  # "module:attribute" of the real click group

    @functools.cached_property
    def group(self) -> click.Group:
        module, attribute = self.target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def list_commands(self, ctx):
        return self.group.list_commands(ctx)

    def get_command(self, ctx, name):
        return self.group.get_command(ctx, name)

    def format_help(self, ctx, formatter):
        self.group.format_help(ctx, formatter)


inventory_option = click.option("-i", "--inventory", "inventory", default=None, metavar="INVENTORY",
                                help="pyinfra inventory file (default: $VSA_INVENTORY or inventory.py).")
# One meaning for every command that acts on hosts: --limit names a host or a group of the inventory.
limit_option = click.option("--limit", "limit", default=None, metavar="HOST|GROUP",
                            help="Only this host, or the hosts of this group.")
