"""What the hosts serve, read live: each declared domain with its vhost and certificate, and every
certificate on every host. Read-only, one command per host; a host that cannot be read is named with
why, and the others are still listed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509

from .config.storage import CERTIFICATES, domain_files
from .domain_changes import registry_path
from .domains import load_registry, served_by
from .pyinfra_glue.connections import run_on_hosts
from .pyinfra_glue.inventory_files import load_inventory


def _unreachable(outputs: dict[str, tuple[bool, str]]) -> dict[str, str]:
    """The hosts a listing could not read, with why."""
    return {name: text for name, (ok, text) in outputs.items() if not ok}


def _certificate_script(names: list[str]) -> str:
    parts = []
    for name in names:
        parts.append(f"echo '@@vhost {name}'; test -f {domain_files(name)['vhost']} && echo yes; "
                     f"echo '@@cert {name}'; cat {CERTIFICATES}/{name}/cert.pem 2>/dev/null")
    return "; ".join(parts) + "; true" if parts else "true"


def _parse_sections(text: str) -> dict[tuple[str, str], str]:
    sections, current, buffer = {}, None, []
    for line in text.splitlines():
        if line.startswith("@@"):
            if current:
                sections[current] = "\n".join(buffer)
            kind, _, name = line[2:].partition(" ")
            current, buffer = (kind, name), []
        else:
            buffer.append(line)
    if current:
        sections[current] = "\n".join(buffer)
    return sections


def _certificate_facts(pem: str) -> dict:
    if "BEGIN CERTIFICATE" not in pem:
        return {"issuer": None, "expires": None, "days_left": None}
    cert = x509.load_pem_x509_certificate(pem.encode())
    expires = cert.not_valid_after_utc
    return {"issuer": cert.issuer.rfc4514_string(), "expires": expires.date().isoformat(),
            "days_left": (expires - dt.datetime.now(dt.timezone.utc)).days}


def domain_status(root: Path, inventory_file: Path) -> tuple[list[dict], dict[str, str]]:
    """Each declared domain on each host serving it: vhost present, certificate, auth; and the hosts
    that could not be read, with why."""
    inventory = load_inventory(inventory_file, root)
    registry = load_registry(registry_path(root, inventory))

    def command(host):
        names = [d.name for d in registry.values() if served_by(d, host.name, host.groups)]
        return _certificate_script(names) if names else None

    outputs = run_on_hosts(inventory_file, root, command)
    rows = []
    for domain in registry.values():
        for host_name, (ok, text) in outputs.items():
            sections = _parse_sections(text)
            if ("vhost", domain.name) not in sections:
                continue
            rows.append({"domain": domain.name, "host": host_name, "upstream": domain.upstream, "tls": domain.tls,
                         "auth": bool(domain.auth), "vhost": sections[("vhost", domain.name)].strip() == "yes",
                         **_certificate_facts(sections.get(("cert", domain.name), ""))})
    return rows, _unreachable(outputs)


def certificate_inventory(root: Path, inventory_file: Path) -> tuple[list[dict], dict[str, str]]:
    """Every certificate on every host, the soonest to expire first; and the hosts that could not be
    read, with why."""
    script = (f"for d in {CERTIFICATES}/*/; do [ -f \"$d/cert.pem\" ] || continue; n=$(basename \"$d\"); "
              f"echo \"@@cert $n\"; cat \"$d/cert.pem\"; done; true")
    outputs = run_on_hosts(inventory_file, root, lambda host: script)
    rows = []
    for host_name, (ok, text) in outputs.items():
        for (kind, name), pem in _parse_sections(text).items() if ok else ():
            rows.append({"host": host_name, "name": name, **_certificate_facts(pem)})
    return (sorted(rows, key=lambda r: (r["days_left"] is None, r["days_left"] or 0, r["host"], r["name"])),
            _unreachable(outputs))
