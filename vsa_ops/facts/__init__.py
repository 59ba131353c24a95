"""pyinfra facts: how to ask a host and how to parse the answer, nothing else."""

from .host_state import HostState

__all__ = ["HostState"]
