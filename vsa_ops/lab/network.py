"""The Docker network ``vsa-lab`` that joins the ACME test CA and every lab host.

It is ``internal`` (no way out, nothing published) and every member has a fixed address: the CA at
``ACME_IP``, lab host N at ``host_ip(N)``. certbot runs in an *inner* container of a lab host, whose
DNS knows no outer container, so it reaches the CA by address, routed and NATed by the lab host. The
subnet lies outside the inner engines' address pools (172.17-31/16, 192.168/16).
"""

from __future__ import annotations

import ipaddress

from . import engine
from .errors import LabError
from .names import ACME_LABEL, host_index

NETWORK = "vsa-lab"
SUBNET = "10.203.7.0/24"
GATEWAY = "10.203.7.1"
DYNAMIC_RANGE = "10.203.7.128/25"  # for anything connected without an address; fixed ones stay below
ACME_IP = "10.203.7.2"


def host_ip(host: str | int) -> str:
    """Fixed address of lab host ``vsa-lab-N`` (or N) on ``vsa-lab``: 10.203.7.(10+N)."""
    return str(ipaddress.ip_network(SUBNET)[10 + host_index(host)])


def ensure() -> None:
    """Create ``vsa-lab`` unless it exists with the right subnet; another subnet is an error."""
    from docker.types import IPAMConfig, IPAMPool  # the SDK, on first use (see engine)

    found = engine.network(NETWORK)
    if found is None:
        ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=SUBNET, gateway=GATEWAY, iprange=DYNAMIC_RANGE)])
        with engine.failing(f"create network {NETWORK}"):
            engine.client().networks.create(NETWORK, internal=True, ipam=ipam, labels={ACME_LABEL: ""})
        return
    subnets = [pool.get("Subnet") for pool in found.attrs["IPAM"]["Config"] or []]
    if subnets != [SUBNET]:
        raise LabError(f"Docker network {NETWORK} has subnet {', '.join(map(str, subnets))}, not {SUBNET}; "
                       f"remove it (vsa-ops lab down) and run vsa-ops lab up again")


def connect(name: str, ip: str) -> None:
    """Attach container ``name`` at ``ip`` (re-attached when it sits there at another address)."""
    found = engine.container(name)
    if found is None:
        raise LabError(f"{name}: no such container")
    attached = found.attrs["NetworkSettings"]["Networks"].get(NETWORK)
    if attached is not None and attached.get("IPAddress") == ip:
        return
    net = engine.network(NETWORK)
    with engine.failing(f"connect {name} to {NETWORK} at {ip}"):
        if attached is not None:
            net.disconnect(name, force=True)
        net.connect(name, ipv4_address=ip)


def remove() -> None:
    """Detach whatever is still on ``vsa-lab`` and remove it; no network is fine."""
    found = engine.network(NETWORK)
    if found is None:
        return
    with engine.failing(f"remove network {NETWORK}"):
        for member in (found.attrs.get("Containers") or {}).values():
            found.disconnect(member["Name"], force=True)
        found.remove()
