"""Hosts and their configuration: which inventory file, which hosts a command names, and each host's
validated configuration from its data layers. Loading the inventory file itself is pyinfra's work
(pyinfra_glue.inventory_files)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import VsaError
from .config import DATA_KEY, HubConfig, hub_config

DEFAULT_INVENTORY = "inventory.py"


class InventoryError(VsaError):
    pass


def inventory_path(option: str | None) -> Path:
    """The inventory file: the option, else $VSA_INVENTORY, else inventory.py. It must exist."""
    path = Path(option or os.environ.get("VSA_INVENTORY") or DEFAULT_INVENTORY)
    if not path.is_file():
        raise InventoryError(f"inventory: no such file {str(path)!r}")
    return path


def host_layers(host) -> list[dict[str, Any]]:
    """The ``vsa`` settings that apply to ``host``, lowest precedence first: all, each group in
    order, the host itself, command-line overrides. Tables merge key by key across layers."""
    inventory = host.inventory
    datas = [inventory.get_data(), *(inventory.get_group_data(g) for g in host.groups),
             inventory.get_host_data(host.name), inventory.get_override_data()]
    return [data[DATA_KEY] for data in datas if data and DATA_KEY in data]


# Validated configurations by their layers: hosts that share them (most do) share one HubConfig,
# and a command asks for each host's several times.
_CONFIGS: dict[str, HubConfig] = {}


def host_config(host) -> HubConfig:
    layers = host_layers(host)
    key = json.dumps(layers, sort_keys=True, default=repr)
    if key not in _CONFIGS:
        _CONFIGS[key] = hub_config(layers)
    return _CONFIGS[key]


def limited(inventory, limits) -> list:
    """The hosts named by ``limits`` (host or group names; empty or None: every host), in inventory order."""
    limits = set(limits or ())
    return [h for h in inventory if not limits or h.name in limits or limits & set(h.groups)]
