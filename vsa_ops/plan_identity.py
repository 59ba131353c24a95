"""Which identity an inventory logs in as. The plan identity (``config.plan_access``) can only run the
state reader in plan mode: commands that change a host refuse it up front, in one line, rather than
send it commands its forced command would answer with a state read."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import VsaError
from .inventory import host_config


class PlanIdentityError(VsaError):
    pass


def is_plan_identity(host) -> bool:
    """Whether ``host``'s inventory entry logs in as its configured plan account."""
    return host.data.get("ssh_user") == host_config(host).plan_identity.user


def refuse_plan_identity(hosts: Iterable, command: str) -> None:
    """Raise when any of ``hosts`` logs in as the plan identity: ``command`` changes hosts."""
    named = [host for host in hosts if is_plan_identity(host)]
    if named:
        user = host_config(named[0]).plan_identity.user
        raise PlanIdentityError(f"{command}: {', '.join(h.name for h in named)}: the inventory logs in as the plan "
                                f"identity {user!r}, which can only plan (vsa-ops plan, vsa-ops drift); use an "
                                f"inventory with the deploy identity")
