"""Domains served by the reverse proxy: names, upstreams and basic-auth users, validated so that no
field can carry NGINX syntax into a vhost."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from .errors import VsaError
from . import yamlio
from .config.base import Model
from .config.rate_limits import RequestLimit, rate_limit_setting, request_limit
from .config.reverse_proxy import Nginx, check_headers

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_UPSTREAM_HOST = re.compile(r"[a-z0-9](?:[a-z0-9_.-]{0,251}[a-z0-9])?")
_USER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|1[0-9])\$[./A-Za-z0-9]{53}")


def domain_name(value: str) -> str:
    """A fully qualified host name, lowered, IDN converted to punycode; anything else is refused."""
    if not isinstance(value, str) or not value:
        raise ValueError("must not be empty")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError("must not contain spaces or control characters")
    if "://" in value or "/" in value or ":" in value:
        raise ValueError("must be a bare host name: no scheme, port or path")
    name = value.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        raise ValueError("must be a host name, not an IP address")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("is an internationalized name that cannot be converted to punycode") from None
    if len(name) > 253:
        raise ValueError("must be at most 253 characters")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValueError("must have at least two labels, such as example.com")
    for label in labels:
        if not label:
            raise ValueError("must not have empty labels")
        if len(label) > 63:
            raise ValueError(f"label {label[:20]}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(f"label {label!r} must be letters, digits and inner hyphens only")
    if labels[-1].isdigit():
        raise ValueError("must end in a top-level domain, not a number")
    return name


def upstream_url(value: str) -> str:
    """``container:port`` on flowbiz_ext or an http(s) URL, returned as a URL."""
    if not isinstance(value, str) or not value:
        raise ValueError("must not be empty")
    if any(ch.isspace() or ch in "\"'`;{}\\$<>|" or ord(ch) < 32 for ch in value):
        raise ValueError("must be host:port or an http(s) URL without spaces, quotes or ;{}$\\")
    url = value if "://" in value else f"http://{value}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must use http or https (unix sockets are not supported)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not carry credentials, a query or a fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    host = (parts.hostname or "").lower()
    if not host or not (_UPSTREAM_HOST.fullmatch(host) or _is_ip(host)):
        raise ValueError("must name a host such as demo-app:8080 or http://10.0.0.5:8080")
    if port is None and "://" not in value:
        raise ValueError("must name a port, such as demo-app:8080")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("has a port out of range 1-65535")
    if parts.path and not re.fullmatch(r"/[A-Za-z0-9._~/-]*", parts.path):
        raise ValueError("has a path with characters other than letters, digits and ._~/-")
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets in a URL
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


INSECURE_AUTH = ("basic auth without TLS sends every password in clear text: serve it over TLS, or set "
                 "insecure_auth (--insecure-auth) to do it anyway")


class Domain(Model):
    """A site the reverse proxy serves."""

    name: str
    aliases: list[str] = []
    upstream: str
    tls: bool = True
    # Basic-auth users: name -> bcrypt hash. Never a plaintext password.
    auth: dict[str, str] = {}
    # A zone of vsa.reverse_proxy.nginx.rate_limit_zones, the site's own RATE[/BURST], or off.
    rate_limit: Annotated[str, BeforeValidator(rate_limit_setting)] = "perip"
    headers: dict[str, str] = {}
    # Hosts or inventory groups that serve it; empty: every host.
    hosts: list[str] = Field(default_factory=list)
    # Forward the basic-auth credentials NGINX checked to the upstream (off: it never sees them).
    pass_auth: bool = False
    # Basic auth over plain HTTP sends every password in clear text: refused unless this is set.
    insecure_auth: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return domain_name(value)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        return [domain_name(alias) for alias in value]

    @field_validator("upstream")
    @classmethod
    def _upstream(cls, value: str) -> str:
        return upstream_url(value)

    @field_validator("auth")
    @classmethod
    def _auth(cls, users: dict[str, str]) -> dict[str, str]:
        # The messages name the user, never the value: a password put here by mistake must not be
        # printed by every command (CI logs included).
        for user, digest in users.items():
            if not _USER.fullmatch(user):
                raise ValueError(f"user {user!r} must be 1-64 letters, digits or ._-")
            if not isinstance(digest, str) or not _BCRYPT.fullmatch(digest):
                raise ValueError(f"user {user!r} must have a bcrypt hash, not a password (value not shown)")
        return users

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)

    @model_validator(mode="after")
    def _distinct_names(self) -> "Domain":
        names = [self.name, *self.aliases]
        if len(set(names)) != len(names):
            raise ValueError("aliases must differ from the name and from each other")
        if self.auth and not self.tls and not self.insecure_auth:
            raise ValueError(INSECURE_AUTH)
        return self

    @property
    def upstream_origin(self) -> str:
        """The upstream's scheme, host and port: what ``proxy_pass`` resolves per request."""
        parts = urlsplit(self.upstream)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def upstream_prefix(self) -> str:
        """The upstream's path without its trailing slash ("" for none or "/"): every request's URI
        goes to the upstream behind it, ``/orders?x`` to ``/base/orders?x``."""
        return urlsplit(self.upstream).path.rstrip("/")

    @property
    def server_names(self) -> list[str]:
        return [self.name, *self.aliases]

    def request_limit(self, nginx: Nginx) -> RequestLimit | None:
        """The limit its location applies (None: off); LookupError for a zone ``nginx`` lacks. Never the
        login zone: every basic-auth site applies it besides (twice is a vhost NGINX refuses), and on a
        site without auth it counts nothing (its key is empty without credentials)."""
        zones = {name: zone for name, zone in nginx.rate_limit_zones.items() if name != nginx.login_zone}
        return request_limit(self.rate_limit, self.name, zones)


# The registry: every domain the hubs serve, in the project's domains.yml (or the file an inventory
# names in its host data under DOMAINS_FILE_KEY, as the lab does).
DOMAINS_FILE = "domains.yml"
DOMAINS_FILE_KEY = "vsa_domains_file"
_HEADER = ("# Domains served by the reverse proxy: `vsa-ops add-domain` and `remove-domain` edit this file;\n"
           "# hand edits are fine. Basic-auth users hold bcrypt hashes only, never passwords.\n")


class RegistryError(VsaError):
    pass


def shown_value(location: tuple, value) -> str:
    """`` (value ...)`` for an error message, empty for a basic-auth entry: what is there is a
    bcrypt hash or, by mistake, a password, and neither is ever printed."""
    if location and location[0] == "auth":
        return ""
    return f" (value {value!r})"


def load_registry(path: Path) -> dict[str, Domain]:
    """The registry's domains by name. Errors name the file, the key and the value (never for ``auth``)."""
    if not path.exists():
        return {}
    try:
        data = yamlio.load(path.read_text()) or {}
    except yamlio.YAMLError as error:
        raise RegistryError(f"{path.name}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path.name}: must map domain names to their settings")
    domains: dict[str, Domain] = {}
    for name, settings in data.items():
        try:
            domain = Domain.model_validate({"name": name, **(settings or {})})
        except ValidationError as error:
            item = error.errors()[0]
            where = ".".join(str(part) for part in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            raise RegistryError(f"{path.name}: {name}.{where}: {message}{shown_value(item['loc'], item['input'])}") \
                from None
        domains[domain.name] = domain
    check_unique(list(domains.values()))
    return domains


def check_unique(domains: list[Domain]) -> None:
    """Every name and alias belongs to one domain only."""
    owner: dict[str, str] = {}
    for domain in domains:
        for name in domain.server_names:
            if name in owner and owner[name] != domain.name:
                raise RegistryError(f"domain {name}: already served by {owner[name]}")
            owner[name] = domain.name


def save_registry(path: Path, domains: dict[str, Domain]) -> None:
    """Write the registry atomically (a temporary file in the same folder, then a rename), readable by
    its owner only: it holds the basic-auth users' bcrypt hashes."""
    data = {}
    for name in sorted(domains):
        entry = domains[name].model_dump(exclude={"name"}, exclude_defaults=True)
        data[name] = entry
    text = _HEADER + (yamlio.dump(data, sort_keys=False, default_flow_style=False) if data else "{}\n")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


@contextmanager
def registry_lock(path: Path, holder: str, echo: Callable[[str], None] = print, wait: float = 1800):
    """Hold the registry for a whole change (read, save, deploy, probe, roll back): two changes at once
    from two processes run one after the other, each on the other's result. The lock file beside the
    registry names its holder; after ``wait`` seconds the second change fails naming it. The holder
    writes its name just after it takes the lock, so a waiter that finds the file still empty looks
    again for a moment before it settles for "another process"."""
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a+") as handle:
        started = time.monotonic()
        deadline, told = started + wait, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                named = handle.read().strip()
                other = named or "another process"
                if time.monotonic() > deadline:
                    raise RegistryError(f"{path.name} is held by {other}; nothing changed") from None
                if not told and (named or time.monotonic() - started > 2):
                    echo(f"waiting for {other} to finish with {path.name}")
                    told = True
                time.sleep(0.1 if not told else 0.5)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def served_by(domain: Domain, host_name: str, groups: list[str]) -> bool:
    """A domain with no hosts listed is served by every host; otherwise by the hosts and groups named."""
    return not domain.hosts or host_name in domain.hosts or any(g in domain.hosts for g in groups)
