"""Plans and drift for review: the same state read and the same plan as a deploy, shown instead of
applied. Two remote commands per host: the state, then the current text of the files that change."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import StringCommand
from pyinfra.api.exceptions import PyinfraError

from .errors import VsaError
from .planning import plan_host
from .plan_report import HostPlan, contents_script, contents_wanted, file_diffs, parse_contents
from .pyinfra_glue.connections import on_hosts


def plan_hosts(root: Path, inventory_file: Path, limit: str | None = None) -> list[HostPlan]:
    def review(host) -> HostPlan:
        try:
            manifest, state, plan = plan_host(host)
        except (VsaError, PyinfraError, OSError) as error:  # one host's problem is reported, the others planned
            return HostPlan(host.name, None, error=str(error).splitlines()[0])
        wanted = contents_wanted(plan)
        current = {}
        if wanted:
            ok, output = host.run_shell_command(StringCommand(contents_script(wanted)), print_output=False)
            # pyinfra hands back lines without their final newline; the script always ends with one.
            current = parse_contents(output.stdout + "\n") if ok else {}
        return HostPlan(host.name, plan, file_diffs(plan, current))

    results = on_hosts(inventory_file, root, review, limit)
    return [value if isinstance(value, HostPlan) else HostPlan(name, None, error=str(value))
            for name, value in results.items()]
