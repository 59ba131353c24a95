"""Render: pure functions from one host's configuration (and the project's template sources) to its
manifest. No I/O: sources, secrets and domains come in as values."""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

import jinja2

from ..errors import VsaError
from .. import yamlio
from ..config import ROOT, Component, HubConfig
from ..config.reverse_proxy import RELOAD_FLAG
from ..config.storage import domain_files
from ..config.observability import grafana_reset_script
from ..manifest import Directory, File, FstabLine, Manifest, Network, Rotation, Service, Stack, SystemUser
from ..domains import Domain
from ..host_programs import PROGRAM_DIR, installed_programs
from ..project import Sources
from .compose import compose_service
from .plan_access import plan_access

COMPOSE_NAMES = ("compose.yml", "compose.yaml", "docker-compose.yml")


class RenderError(VsaError):
    """A manifest cannot be made; the message names what is missing or wrong."""


def user_ids(hub: HubConfig) -> dict[str, int]:
    """Account name to uid, from the container user model."""
    ids = {"root": 0}
    for component in _components(hub).values():
        if component.container.runs_as:
            ids[component.container.runs_as.name] = component.container.runs_as.uid
    return ids


def _components(hub: HubConfig) -> dict[str, Component]:
    return {name: c for stack in hub.builtin_stacks().values() for name, c in stack.items()}


# One Jinja environment per Sources: it keeps the compiled templates, so a process that renders
# many hosts (or one host twice) compiles each template once.
_ENVIRONMENTS: dict[int, tuple[Sources, jinja2.Environment]] = {}


def _environment(sources: Sources) -> jinja2.Environment:
    cached = _ENVIRONMENTS.get(id(sources))
    if cached and cached[0] is sources:
        return cached[1]
    env = jinja2.Environment(
        loader=jinja2.DictLoader(sources.files),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["json"] = lambda value: json.dumps(value)
    _ENVIRONMENTS[id(sources)] = (sources, env)
    return env


def render_host(
    hub: HubConfig,
    sources: Sources,
    *,
    host: str,
    secrets: Mapping[str, str] | None,
    domains: Iterable[Domain] = (),
    certificates: Iterable[str] | None = None,
) -> Manifest:
    """Everything ``host`` must have. ``secrets=None`` renders placeholders (for lint and plans that
    need no values); otherwise a missing secret is an error naming it. ``certificates`` names the
    domains whose certificate exists on the host (None: all); the others get an HTTP-only vhost."""
    env = _environment(sources)
    ids = user_ids(hub)
    components = _components(hub)
    domains = list(domains)

    def uid(name: str, what: str) -> int:
        if name.isdigit():
            return int(name)
        if name not in ids:
            raise RenderError(f"{what}: unknown account {name!r} (known: {', '.join(sorted(ids))})")
        return ids[name]

    directories = {d.path: Directory(d.path, uid(d.owner, d.path), uid(d.group, d.path), d.mode, d.owned)
                   for d in hub.directories}
    files: list[File] = []
    stacks: list[Stack] = []
    bodies: dict[str, str] = {}

    # The backup stack runs only where a repository is set (vsa.backup.repository).
    enabled = hub.stacks if hub.stacks is not None else [
        name for name in sources.stack_names() if name != "backup" or hub.backup.enabled]
    if "backup" in enabled and not hub.backup.enabled:
        raise RenderError("vsa.stacks: the backup stack needs vsa.backup.repository")
    missing = sorted(set(enabled) - set(sources.stack_names()))
    if missing:
        raise RenderError(f"vsa.stacks: no stacks/{missing[0]}/ folder for stack {missing[0]!r}")

    for stack_name in enabled:
        context = {"hub": hub, "host": host, "domains": domains, "reload_flag": RELOAD_FLAG,
                   "service": lambda name: json.dumps(compose_service(_component(components, name)))}
        compose_text = None
        for rel, _ in sorted(sources.stack_files(stack_name).items()):
            template_name = f"stacks/{stack_name}/{rel}"
            dest_rel = rel[:-3] if rel.endswith(".j2") else rel
            text = _render(env, template_name, context) if rel.endswith(".j2") else sources.files[template_name]
            if dest_rel in COMPOSE_NAMES:
                compose_text = text
                continue
            if not text.strip():
                continue  # a template that renders empty is switched off for this host
            mode = "0755" if template_name in sources.executable else "0644"
            files.append(File(f"{ROOT}/{stack_name}/{dest_rel}", text, mode=mode))
        if compose_text is None:
            raise RenderError(f"stacks/{stack_name}/: no compose file (one of {', '.join(COMPOSE_NAMES)})")
        stack, bodies[stack_name] = _parsed_stack(hub, components, stack_name, compose_text)
        stacks.append(stack)

    files.extend(_secret_files(hub, secrets, {s.name for s in stacks}))
    if any(s.name == "reverse-proxy" for s in stacks):
        issued = None if certificates is None else set(certificates)
        for domain in domains:
            files.extend(_domain_files(hub, env, host, domain, issued, ids))
    files.append(File("/etc/docker/daemon.json", json.dumps(hub.docker.daemon_json(), indent=2) + "\n"))
    if any(s.name == "reverse-proxy" for s in stacks):
        nginx_uid = hub.reverse_proxy.nginx.container.runs_as.uid if hub.reverse_proxy.nginx.container.runs_as else 0
        files.append(File("/etc/logrotate.d/vsa-ops", _render(env, "templates/logrotate.j2", {
            "hub": hub, "host": host, "root": ROOT, "nginx_uid": nginx_uid})))
    for stack in stacks:
        body = bodies[stack.name]
        header = f"# Rendered by vsa-ops from stacks/{stack.name}/ for {host}. Edit the source, not this file.\n"
        files.append(File(stack.compose_path, header + body))

    for item in files:
        parent = posixpath.dirname(item.path)
        while parent not in directories and parent.startswith(ROOT):
            directories[parent] = Directory(parent)
            parent = posixpath.dirname(parent)

    users = sorted({(c.container.runs_as.name, c.container.runs_as.uid) for c in components.values()
                    if c.container.runs_as and c.container.runs_as.uid not in (0, 65534)}
                   | {(r.name, r.gid) for r in hub.secret_readers.all()})
    files += installed_programs()
    directories[PROGRAM_DIR] = Directory(PROGRAM_DIR, 0, 0, "0755")
    plan_files, plan_directories, plan_users = plan_access(hub.plan_identity, files, directories)
    files, users = files + plan_files, sorted({*users, *plan_users})
    directories.update({d.path: d for d in plan_directories})
    return Manifest(
        host=host,
        files=tuple(sorted(files, key=lambda f: f.path)),
        directories=tuple(sorted(directories.values(), key=lambda d: d.path)),
        fstab=tuple(FstabLine(e.spec, e.mountpoint, e.fstype, e.options, e.dump, e.passno)
                    for e in hub.storage.fstab),
        networks=tuple(Network(name, n.internal, n.shared, tuple(n.members) if n.members else None)
                       for name, n in hub.networks.items()),
        stacks=tuple(stacks),
        users=tuple(SystemUser(name, uid_) for name, uid_ in users),
        pull=hub.docker.pull,
        domains=tuple(domains) if any(s.name == "reverse-proxy" for s in stacks) else (),
        rotations=_rotations(hub, {s.name for s in stacks}),
    )


def _domain_files(hub: HubConfig, env: jinja2.Environment, host: str, domain: Domain,
                  issued: set[str] | None, ids: dict[str, int]) -> list[File]:
    nginx = hub.reverse_proxy.nginx
    try:
        domain.request_limit(nginx)
    except LookupError as error:
        raise RenderError(f"domain {domain.name}: rate_limit {domain.rate_limit!r} is not a zone "
                          f"({error.args[0]})") from None
    context = {
        "hub": hub, "host": host, "domain": domain,
        "tls_ready": domain.tls and (issued is None or domain.name in issued),
        "headers": (nginx.security_headers | domain.headers) if domain.headers else None,
    }
    paths = domain_files(domain.name)
    files = [File(paths["vhost"], _render(env, "templates/vhost.conf.j2", context), domain=domain.name)]
    if domain.auth:
        lines = "".join(f"{user}:{digest}\n" for user, digest in sorted(domain.auth.items()))
        files.append(File(paths["htpasswd"], lines, 0, ids["nginx"], "0640", sensitive=True, domain=domain.name))
    return files


def _component(components: dict[str, Component], name: str) -> Component:
    if name not in components:
        raise RenderError(f"service({name!r}): no such built-in service (known: {', '.join(sorted(components))})")
    return components[name]


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateError as error:
        line = getattr(error, "lineno", None)
        raise RenderError(f"{name}{f':{line}' if line else ''}: {error}") from None


# YAML is most of a render's time, and hosts that share a configuration render the same compose
# text: each (configuration, stack, text) is parsed and dumped once per process.
_STACKS: dict[tuple[int, str, str], tuple[HubConfig, Stack, str]] = {}


def _parsed_stack(hub: HubConfig, components: dict[str, Component], name: str, text: str) -> tuple[Stack, str]:
    """The stack, and its compose file as installed (normalised YAML)."""
    key = (id(hub), name, text)
    cached = _STACKS.get(key)
    if cached and cached[0] is hub:
        return cached[1], cached[2]
    stack = _stack(hub, components, name, text)
    body = yamlio.dump(stack.compose, sort_keys=False, default_flow_style=False, width=1000)
    if len(_STACKS) > 256:
        _STACKS.clear()
    _STACKS[key] = (hub, stack, body)
    return stack, body


def _stack(hub: HubConfig, components: dict[str, Component], name: str, text: str) -> Stack:
    try:
        compose = yamlio.load(text)
    except yamlio.YAMLError as error:
        raise RenderError(f"stacks/{name}/compose.yml: not valid YAML: {error}".splitlines()[0]) from None
    if not isinstance(compose, dict) or not isinstance(compose.get("services"), dict):
        raise RenderError(f"stacks/{name}/compose.yml: must be a compose file with a services table")
    compose = {"name": name, **{k: v for k, v in compose.items() if k != "name"}}
    services = compose["services"]
    # Networks and volumes that configuration knows are defined from it, so every stack names them
    # the same way (flowbiz_ext external, isolated networks internal) without repeating it.
    networks = compose.setdefault("networks", {}) or {}
    compose["networks"] = networks
    for spec in services.values():
        joined = spec.get("networks", [])
        for net in joined if isinstance(joined, list) else list(joined or {}):
            if net not in networks and net in hub.networks:
                known = hub.networks[net]
                networks[net] = {"name": net, "external": True} if known.shared else {
                    "name": net, "internal": known.internal}
        for volume in spec.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source in hub.storage.volumes:
                compose.setdefault("volumes", {}).setdefault(source, {"name": source})
    if not networks:
        del compose["networks"]
    by_container = {c.container.container_name: c for c in components.values()}
    service_info = []
    for service_name, spec in services.items():
        container_name = spec.get("container_name") or f"{name}-{service_name}-1"
        component = by_container.get(container_name)
        service_info.append(Service(
            service_name, container_name,
            tuple(component.container.validate_command) if component else (),
            tuple(component.container.reload_command) if component else (),
            tuple(m.source for m in component.container.mounts if m.live) if component else (),
            component.container.reload_signal if component else "",
        ))
    builtin = all(s.container_name in by_container for s in service_info)
    return Stack(name, f"{ROOT}/{name}", compose, tuple(service_info), builtin)


def _rotations(hub: HubConfig, stacks: set[str]) -> tuple[Rotation, ...]:
    """How a changed password takes effect: the database role's (the API then connects with the new
    one) and Grafana's admin user's, both kept in a database the file only seeds."""
    rotations = []
    if "dashboard" in stacks:
        postgres = hub.dashboard.postgres
        rotations.append(Rotation(f"{ROOT}/dashboard/secrets/postgres_password", postgres.container.container_name,
                                  postgres.rotate_password_script("/run/secrets/postgres_password"),
                                  f"PostgreSQL role {postgres.user}'s password"))
    if "observability" in stacks:
        rotations.append(Rotation(f"{ROOT}/observability/secrets/grafana_admin_password",
                                  hub.observability.grafana.container.container_name,
                                  grafana_reset_script("/run/secrets/grafana_admin_password"),
                                  "Grafana admin password"))
    return tuple(rotations)


def _secret_files(hub: HubConfig, secrets: Mapping[str, str] | None, stacks: set[str]) -> list[File]:
    """Password files, ``root:<reader> 0640``: readable by root and by the secret reader's group, which
    only the one container that needs each file has (``config.accounts``)."""
    def value(key: str, purpose: str) -> str:
        name = getattr(hub.secrets, key)
        if secrets is None:
            return f"<secret {name}>"
        if not secrets.get(name):
            raise RenderError(f"missing secret {name} ({purpose}): set it in the environment or in secrets.env")
        return secrets[name]

    files, readers = [], hub.secret_readers
    if "dashboard" in stacks:
        password = value("postgres_password", "dashboard PostgreSQL password")
        dash = f"{ROOT}/dashboard/secrets"
        files.append(File(f"{dash}/postgres_password", password, 0, readers.dashboard_postgres.gid, "0640",
                          sensitive=True))
        files.append(File(f"{dash}/api_database_password", password, 0, readers.dashboard_api.gid, "0640",
                          sensitive=True))
    if "observability" in stacks:
        password = value("grafana_admin_password", "Grafana admin password")
        files.append(File(f"{ROOT}/observability/secrets/grafana_admin_password", password, 0,
                          readers.grafana.gid, "0640", sensitive=True))
    if "backup" in stacks:
        for key in hub.backup.secret_keys():
            purpose = f"the backup repository's {key.removeprefix('backup_').replace('_', ' ')}"
            files.append(File(f"{ROOT}/backup/secrets/{key}", value(key, purpose), 0, 0, "0600", sensitive=True))
    return files
