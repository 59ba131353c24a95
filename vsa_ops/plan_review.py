"""Plans and drift for review: the same state read and the same plan as a deploy, shown instead of
applied. Two remote commands per host, both the state reader: the state, then the current text of
the files that change. That is all the plan identity's key can run (state.sh's plan mode)."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import StringCommand
from pyinfra.api.exceptions import PyinfraError

from .errors import VsaError
from .plan_identity import is_plan_identity
from .planning import plan_host
from .plan_report import HostPlan, contents_wanted, file_diffs
from .pyinfra_glue.connections import on_hosts
from .state_read import parse_texts, state_command, text_request


def current_texts(host, paths: list[str]) -> dict[str, str]:
    """The text of ``paths`` on ``host`` (those it has and, as the plan identity, may read)."""
    ok, output = host.run_shell_command(StringCommand(state_command()), _stdin=text_request(paths),
                                        print_output=False)
    return parse_texts(output.stdout) if ok else {}


def plan_hosts(root: Path, inventory_file: Path, limit: str | None = None) -> list[HostPlan]:
    def review(host) -> HostPlan:
        try:
            manifest, state, plan = plan_host(host, review=True)
        except (VsaError, PyinfraError, OSError) as error:  # one host's problem is reported, the others planned
            return HostPlan(host.name, None, error=str(error).splitlines()[0], read_only=is_plan_identity(host))
        wanted = contents_wanted(plan)
        current = current_texts(host, [p for p in wanted if p != "/etc/fstab"]) if wanted else {}
        current["/etc/fstab"] = state.fstab  # in the state read already
        return HostPlan(host.name, plan, file_diffs(plan, current), not_compared=sorted(state.not_compared),
                        read_only=state.read_only or is_plan_identity(host))

    results = on_hosts(inventory_file, root, review, limit)
    return [value if isinstance(value, HostPlan) else HostPlan(name, None, error=str(value))
            for name, value in results.items()]
