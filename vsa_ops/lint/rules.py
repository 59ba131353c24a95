"""The design's rules for stacks, networks, users, mounts, images and the Docker disk."""

from __future__ import annotations

from collections.abc import Iterator

from ..config import HubConfig, parse_size
from ..manifest import Manifest
from .base import (DATABASE_IMAGES, DOCKER_SOCKETS, RESTART_POLICIES, Finding, _mounts, _network_definition,
                   _network_name, _networks_of, _root_access_reason, _services, rule)


@rule
def database_networks(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """A database or cache joins only its stack's internal network and publishes no port."""
    for stack, name, spec in _services(manifest):
        if not DATABASE_IMAGES.search(str(spec.get("image", ""))):
            continue
        if spec.get("network_mode") == "host":
            yield Finding("db-network", stack.name, name, "a database must not use the host network")
        if spec.get("ports"):
            yield Finding("db-network", stack.name, name, f"a database must publish no port (publishes {spec['ports']})")
        for key in _networks_of(spec) or ["default"]:
            net = _network_name(stack, key)
            definition = _network_definition(stack, key)
            known = hub.networks.get(net)
            if known is not None and known.shared or definition.get("external"):
                yield Finding("db-network", stack.name, name,
                              f"joins {net}; a database joins only its stack's internal network")
            elif not (definition.get("internal") or (known is not None and known.internal)):
                yield Finding("db-network", stack.name, name,
                              f"joins {net}, which is not internal; a database joins only its stack's internal network")


@rule
def network_isolation(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Isolated networks are internal and hold only the containers the design puts on them."""
    for stack in manifest.stacks:
        for key, definition in (stack.compose.get("networks") or {}).items():
            net = (definition or {}).get("name", key)
            known = hub.networks.get(net)
            if known is not None and known.internal and not (definition or {}).get("internal"):
                yield Finding("network-isolation", stack.name, "", f"network {net} must be internal: true")
    for stack, name, spec in _services(manifest):
        container = spec.get("container_name", f"{stack.name}-{name}-1")
        for key in _networks_of(spec):
            net = _network_name(stack, key)
            known = hub.networks.get(net)
            if known is not None and known.members is not None and container not in known.members:
                yield Finding("network-isolation", stack.name, name,
                              f"{container} joins {net}, which the design reserves for {', '.join(known.members)}")


@rule
def unknown_networks(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    for stack, name, spec in _services(manifest):
        for key in _networks_of(spec):
            if key not in (stack.compose.get("networks") or {}):
                yield Finding("unknown-network", stack.name, name, f"joins network {key}, defined nowhere")


@rule
def docker_socket_read_only(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """The Docker socket (or a folder holding it) is mounted read-only wherever it is mounted."""
    for stack, name, spec in _services(manifest):
        for source, _target, read_only in _mounts(spec):
            if source.rstrip("/") in DOCKER_SOCKETS and not read_only:
                yield Finding("docker-socket-ro", stack.name, name, f"mounts {source} read-write; mount it :ro")


ROOT_EQUIVALENT_CAPS = {"ALL", "SYS_ADMIN"}


@rule
def root_equivalent_access(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Privileged, the host's / mounted read-write, or capabilities that amount to root: an error unless the
    service names why (container.root_access_reason; label vsa.root-access-reason in a project stack). The
    Docker socket is root on the host whatever its :ro (the API it serves can start a privileged
    container): a warning unless a reason is named."""
    for stack, name, spec in _services(manifest):
        if _root_access_reason(spec):
            continue
        if spec.get("privileged"):
            yield Finding("root-access", stack.name, name, "is privileged; name why in container.root_access_reason")
        for source, _target, read_only in _mounts(spec):
            if source.rstrip("/") == "" and source.startswith("/") and not read_only:
                yield Finding("root-access", stack.name, name,
                              "mounts the host's / read-write; mount it :ro or name why in container.root_access_reason")
            if source.rstrip("/") in DOCKER_SOCKETS:
                yield Finding("root-access", stack.name, name,
                              f"mounts {source}: the Docker API is root on the host, even :ro; name why in "
                              f"container.root_access_reason", severity="warning")
        strong = ROOT_EQUIVALENT_CAPS & set(spec.get("cap_add") or [])
        if strong:
            yield Finding("root-access", stack.name, name,
                          f"adds capability {', '.join(sorted(strong))}; name why in container.root_access_reason")


@rule
def user_model(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Containers of the design's user model run as its users, whatever the overrides say."""
    design = {c.container.container_name: c.container.runs_as
              for stack in HubConfig().builtin_stacks().values() for c in stack.values()}
    for stack, name, spec in _services(manifest):
        runs_as = design.get(spec.get("container_name", ""))
        if runs_as is None:
            continue
        user = spec.get("user")
        if runs_as.set_in_compose:
            if user is None or str(user).split(":")[0] not in (str(runs_as.uid), runs_as.name):
                yield Finding("user-model", stack.name, name,
                              f"runs as {user or 'the image default'}; the design's user is {runs_as.name} ({runs_as.uid})")
        elif user is not None:
            yield Finding("user-model", stack.name, name,
                          f"sets user {user}; the image starts as root and switches to {runs_as.name} ({runs_as.uid}) itself")


@rule
def restart_and_logs(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Every service restarts by policy and keeps bounded json-file logs."""
    for stack, name, spec in _services(manifest):
        if not RESTART_POLICIES.fullmatch(str(spec.get("restart", ""))):
            yield Finding("restart-policy", stack.name, name, f"restart is {spec.get('restart', 'unset')!r}")
        logging = spec.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file" or not options.get("max-size") or not options.get("max-file"):
            yield Finding("bounded-logs", stack.name, name, "needs logging driver json-file with max-size and max-file")


@rule
def pinned_images(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    for stack, name, spec in _services(manifest):
        image = str(spec.get("image", ""))
        if "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest":
            yield Finding("pinned-image", stack.name, name, f"image {image or '(none)'} is not pinned to a version")


@rule
def single_file_mounts(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Managed files are replaced by rename: a container must mount their folder, not the file."""
    managed = {item.path for item in manifest.files}
    for stack, name, spec in _services(manifest):
        for source, _target, _ro in _mounts(spec):
            if source in managed:
                yield Finding("single-file-mount", stack.name, name,
                              f"mounts the managed file {source}; mount its folder (a rename leaves the old inode)")


@rule
def disk_budget(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """The retention caps and container log caps together fit the Docker disk budget."""
    storage = hub.storage
    volumes = sum(hub.volume_caps().values())
    logs = 0
    for _stack, _name, spec in _services(manifest):
        options = (spec.get("logging") or {}).get("options") or {}
        if options.get("max-size") and options.get("max-file"):
            logs += parse_size(str(options["max-size"])) * int(options["max-file"])
    budget = parse_size(storage.docker_disk) * storage.docker_disk_budget_percent // 100
    if volumes + logs > budget:
        yield Finding("disk-budget", "", "", f"volume caps {volumes / 2**30:.1f} GiB + log caps {logs / 2**30:.1f} GiB "
                      f"exceed {storage.docker_disk_budget_percent}% of the {storage.docker_disk} Docker disk")


@rule
def published_ports(manifest: Manifest, hub: HubConfig) -> Iterator[Finding]:
    """Only the reverse proxy publishes on every interface; Docker's rules bypass host firewalls."""
    proxy = hub.reverse_proxy.nginx.container.container_name
    for stack, name, spec in _services(manifest):
        if spec.get("container_name") == proxy:
            continue
        for port in spec.get("ports") or []:
            text = str(port)
            if not (text.startswith("127.") or text.startswith("[::1]")):
                yield Finding("published-port", stack.name, name,
                              f"publishes {text} on every interface; bind it to 127.0.0.1", "warning")
