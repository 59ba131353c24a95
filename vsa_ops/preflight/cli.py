"""``vsa-ops preflight``. Register with ``main.add_command(preflight)``."""

from __future__ import annotations

import json
import sys

import click

from ..cli_support import inventory_option, limit_option
from ..inventory import inventory_path
from ..project import find_root
from .run import preflight as run_preflight


@click.command()
@inventory_option
@limit_option
@click.option("--json", "as_json", is_flag=True, help="Every check of every host as JSON: status, message and fix.")
def preflight(inventory: str | None, limit: str | None, as_json: bool):
    """Check that each host is ready for its first deploy; changes nothing. Exit 1 on any failed check."""
    reports = run_preflight(find_root(), inventory_path(inventory).resolve(), limit)
    if as_json:
        click.echo(json.dumps([{"host": r.host, **c.as_dict()} for r in reports for c in r.checks], indent=2))
    else:
        for report in reports:
            for check in report.checks:
                fix = f" Fix: {check.fix}" if check.fix and check.status != "ok" else ""
                click.echo(f"{report.host}: {check.status:<4} {check.name}: {check.message}.{fix}")
            counts = {s: sum(c.status == s for c in report.checks) for s in ("ok", "warn", "fail")}
            verdict = "not ready" if report.failed else "ready"
            click.echo(f"{report.host}: {verdict} ({counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail)")
    sys.exit(1 if any(r.failed for r in reports) else 0)
