"""Compose services, networks and volumes from the configuration models."""

from __future__ import annotations

from typing import Any

from ..config import Component

# Lint reads why a service may hold root-equivalent access from this label (project stacks set it too).
ROOT_ACCESS_LABEL = "vsa.root-access-reason"


def _escape(value: str) -> str:
    # Compose interpolates $VAR in every string; a literal $ (shell loops, nginx variables) is $$.
    return value.replace("$", "$$")


def compose_service(component: Component) -> dict[str, Any]:
    """The compose service for one component, with keys in compose's usual order."""
    c = component.container
    service: dict[str, Any] = {"image": c.image, "container_name": c.container_name}
    if c.user:
        service["user"] = c.user
    if component.entrypoint is not None:
        service["entrypoint"] = [_escape(part) for part in component.entrypoint]
    if component.command is not None:
        service["command"] = [_escape(part) for part in component.command]
    if component.environment:
        service["environment"] = {key: _escape(value) for key, value in component.environment.items()}
    if c.mounts:
        service["volumes"] = [_volume(mount) for mount in c.mounts]
    if c.ports:
        service["ports"] = [port.short for port in c.ports]
    if c.network_mode:
        service["network_mode"] = c.network_mode
    elif c.networks:
        service["networks"] = list(c.networks)
    if c.depends_on:
        service["depends_on"] = list(c.depends_on)
    if c.group_add:
        service["group_add"] = [str(gid) for gid in c.group_add]
    service["restart"] = c.restart
    service["logging"] = {"driver": c.logging.driver,
                          "options": {"max-size": c.logging.max_size, "max-file": str(c.logging.max_file)}}
    if c.healthcheck:
        h = c.healthcheck
        service["healthcheck"] = {"test": h.test, "interval": h.interval, "timeout": h.timeout,
                                  "retries": h.retries, "start_period": h.start_period}
    if c.privileged:
        service["privileged"] = True
    if c.security_opt:
        service["security_opt"] = list(c.security_opt)
    if c.cap_drop:
        service["cap_drop"] = list(c.cap_drop)
    if c.cap_add:
        service["cap_add"] = list(c.cap_add)
    if c.root_access_reason:
        service["labels"] = {ROOT_ACCESS_LABEL: _escape(c.root_access_reason)}
    for key in ("mem_limit", "shm_size", "stop_grace_period"):
        if getattr(c, key):
            service[key] = getattr(c, key)
    return service


def _volume(mount) -> dict[str, Any]:
    volume: dict[str, Any] = {"type": "bind" if mount.is_bind else "volume", "source": mount.source,
                              "target": mount.target, "read_only": mount.read_only}
    if mount.is_bind:
        # Host paths of the system (the journal, /dev/disk) may be absent on a given host; like the
        # short syntax, let Docker create an empty folder rather than refuse to start.
        volume["bind"] = {"create_host_path": True}
        if mount.propagation:
            volume["bind"]["propagation"] = mount.propagation
    return volume
