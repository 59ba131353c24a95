"""Configuration: pydantic models for every table of the design. Their defaults are the design's
values (each commented with the table it comes from); ``group_data/`` overrides them."""

from .base import parse_duration, parse_size
from .component import Component
from .containers import Container, Mount, Port, RunAs
from .hub import DATA_KEY, ConfigError, HubConfig, deep_merge, hub_config
from .storage import DASHBOARD, OBSERVABILITY, REVERSE_PROXY, ROOT

__all__ = [
    "Component", "ConfigError", "Container", "DASHBOARD", "DATA_KEY", "HubConfig", "Mount", "OBSERVABILITY",
    "Port", "REVERSE_PROXY", "ROOT", "RunAs", "deep_merge", "hub_config", "parse_duration", "parse_size",
]
