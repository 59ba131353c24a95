"""``vsa-ops audit``: list the audit records on the hosts, and ``vsa-ops audit verify`` their chain.
Register with ``main.add_command(audit)``; the group also runs on its own (tests, ``python -c``)."""

from __future__ import annotations

import json
import sys

import click

from ..cli_support import Command, inventory_option, limit_option
from ..inventory import inventory_path
from ..project import find_root
from . import query, trail
from .records import actor


def _where(ctx: click.Context, inventory: str | None):
    """The project root and the inventory: this command's -i, else the group's, else the default."""
    inventory = inventory or (ctx.obj or {}).get("inventory")
    return find_root(), inventory_path(inventory).resolve()


def _line(record: dict) -> str:
    changes = record.get("changes")
    changes = ", ".join(map(str, changes)) if isinstance(changes, list) else (changes or "")
    text = (f"{record.get('ts', '?')} {record.get('vps_id', '?')} #{record.get('seq', '?')} "
            f"{record.get('action', '?')} {record.get('target', '?')}: {record.get('result', '?')} "
            f"in {record.get('duration', '?')} s by {record.get('actor', '?')}")
    if changes:
        text += f"; changes: {changes}"
    if record.get("error"):
        text += f"; error: {record['error']}"
    return text


@click.group(cls=Command, invoke_without_command=True)
@inventory_option
@limit_option
@click.option("--since", "since", default=None, metavar="WHEN",
              help="Only records since WHEN: an ISO date/time (UTC unless given) or a duration like 2h, 7d.")
@click.option("--action", "action", default=None, metavar="ACTION", help="Only this action (deploy, ...).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: a JSON list of records.")
@click.pass_context
def audit(ctx, inventory, limit, since, action, as_json):
    """The audit trail on each host: what vsa-ops did, by whom, with what result (oldest first)."""
    ctx.obj = {"inventory": inventory}
    if ctx.invoked_subcommand is not None:
        return
    since_time = query.parse_since(since) if since else None
    root, path = _where(ctx, inventory)
    found = trail.read(path, root, limit)
    records, unreadable = [], []
    for host, rows in found.items():
        if isinstance(rows, str):
            unreadable.append(host)
            click.echo(f"vsa-ops: {host}: {rows}", err=True)
        else:
            records += rows
    chosen = query.select(records, since_time, action)
    if as_json:
        click.echo(json.dumps(chosen, indent=2, ensure_ascii=False))
    else:
        for record in chosen:
            click.echo(_line(record))
        if not chosen:
            click.echo("no audit records" + (" match" if records else ""), err=True)
    sys.exit(1 if unreadable else 0)


@audit.command("verify")
@inventory_option
@limit_option
@click.pass_context
def verify(ctx, inventory, limit):
    """Check each host's hash chain, its records' signatures, what this controller last wrote or verified
    there, and its SQLite mirror; exit 1 naming the first broken record."""
    root, path = _where(ctx, inventory)
    broken = 0
    for host, result in trail.inspect(path, root, limit).items():
        if not result.problems:
            rows = f", SQLite {len(result.sqlite_rows)} rows" if result.sqlite_rows is not None else ""
            notes = "; ".join(n for n in (result.sqlite_note, result.unsigned_note) if n)
            click.echo(f"{host}: intact, {len(result.records)} records{rows}" + (f" ({notes})" if notes else ""))
            continue
        broken += 1
        first, *others = result.problems
        click.echo(f"{host}: BROKEN at {first}")
        for problem in others:
            click.echo(f"{host}: also {problem}")
    sys.exit(1 if broken else 0)


@audit.command("forget")
@inventory_option
@click.argument("host")
@click.pass_context
def forget(ctx, inventory, host):
    """Forget what this controller last wrote or verified on HOST: only for a host rebuilt on purpose,
    whose trail started anew (verify would otherwise report its records as cut)."""
    root, path = _where(ctx, inventory)
    known = trail.forget_head(path, root, host)
    click.echo(f"{host}: " + ("forgotten; the next verify or append remembers its trail anew" if known
                              else "nothing remembered"))


@audit.command("key")
def key():
    """This controller's public audit key (made on first use), one line for the project's audit-keys.pub."""
    from . import keys

    click.echo(keys.public_line(keys.controller_key(), actor(find_root())))
