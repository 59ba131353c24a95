"""Preflight's checks made from the controller's side: where each TLS domain's name points, and whether
the host's SSH key was pinned before vsa-ops first connected. Pure functions of what was looked up."""

from __future__ import annotations

from .checks import Check

# Host data: the address(es) the host serves on, when ssh_hostname is not it (a private network, a
# jump host, a NAT); and names whose addresses are given rather than looked up in DNS (a lab or a
# split-horizon setup: preflight says so on every such line).
PUBLIC_ADDRESS_KEY = "vsa_public_address"
DNS_OVERRIDES_KEY = "vsa_dns_overrides"


def dns(names: list[str], resolved: dict[str, list[str] | str], public: list[str] | str,
        overridden: set[str]) -> list[Check]:
    """One check per TLS name: every address it resolves to is one of the host's.

    + names: the names (domains and aliases) served with TLS by the host
    + resolved: name -> its addresses, or why it did not resolve
    + public: the host's public addresses, or why they are unknown
    + overridden: the names whose addresses came from vsa_dns_overrides
    """
    if not names:
        return [Check("dns", "ok", "no domain with TLS on this host")]
    if isinstance(public, str):
        return [Check("dns", "fail", f"this host's public address is unknown: {public}",
                      f"Set {PUBLIC_ADDRESS_KEY} in the host's data in the inventory.")]
    here = ", ".join(public)
    checks = []
    for name in names:
        addresses = resolved.get(name, "not looked up")
        source = f" ({DNS_OVERRIDES_KEY}, not DNS)" if name in overridden else ""
        fix = (f"Point {name}'s A (and AAAA, if any) records at {here} only, wait for their TTL, and run preflight "
               "again: Let's Encrypt validates the addresses DNS gives it, and failures count against its limits.")
        if isinstance(addresses, str):
            checks.append(Check(f"dns {name}", "fail", f"{name} does not resolve: {addresses}", fix))
        elif set(addresses) <= set(public):
            checks.append(Check(f"dns {name}", "ok", f"{name} resolves to {', '.join(addresses)}{source}, this host"))
        else:
            elsewhere = [a for a in addresses if a not in public]
            where = (f"not to this host ({here})" if len(elsewhere) == len(addresses)
                     else f"and {', '.join(elsewhere)} is not this host ({here})")
            checks.append(Check(f"dns {name}", "fail", f"{name} resolves to {', '.join(addresses)}{source}, {where}",
                                fix))
    return checks


def host_key(pinned: bool, strict: str | None, known_hosts: str, target: str, port: int,
             connected: bool = False) -> Check:
    """The host's SSH key is in known_hosts before the first connection, and keys are checked.

    + pinned: known_hosts had a key for ``target`` before preflight connected
    + strict: the inventory's ssh_strict_host_key_checking (None: pyinfra's default, accept-new)
    + known_hosts: the file pyinfra checks keys against
    + target: the name known_hosts files it under (``[host]:port`` for a port other than 22)
    + connected: preflight then connected (with accept-new, that recorded the key it was shown)
    """
    scan = f"ssh-keyscan{f' -p {port}' if port != 22 else ''} {target.split(']')[0].lstrip('[')}"
    fix = (f"Run `{scan} > key.pub`, compare `ssh-keygen -lf key.pub` with the fingerprint the provider's console "
           f"shows, then append key.pub to {known_hosts}.")
    if (strict or "").lower() in ("off", "no", "false"):
        return Check("host key", "fail", f"host keys are not checked (ssh_strict_host_key_checking={strict})",
                     fix + " Then remove ssh_strict_host_key_checking from the host's data.")
    if pinned:
        return Check("host key", "ok", f"{target} is pinned in {known_hosts}")
    seen = " (this run's connection has now added the key it was shown, unverified)" if connected and strict in (None, "accept-new") else ""
    return Check("host key", "fail", f"{target} was not in {known_hosts}: the first connection trusts any key{seen}",
                 fix)
