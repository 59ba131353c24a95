"""pyinfra facts: how to ask a host and how to parse the answer, nothing else."""

from .host_state import HostState, parse_host_state

__all__ = ["HostState", "parse_host_state"]
