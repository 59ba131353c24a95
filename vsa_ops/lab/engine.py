"""The controller's Docker engine, through the Docker SDK.

``docker`` is imported on first use, not with this module: the import alone takes about 0.3 s, and
recipes, names and the CLI's help need none of it. Every SDK error that reaches the lab's callers is
a ``LabError`` naming what was being done (``failing``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import LabError

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container
    from docker.models.images import Image
    from docker.models.networks import Network


@functools.cache
def client() -> DockerClient:
    """One client per process; the API version is negotiated with the engine (20.10 speaks 1.41)."""
    import docker

    try:
        # Image imports and loads take minutes on the vfs storage driver; the default 60 s is too short.
        return docker.from_env(version="auto", timeout=900)
    except docker.errors.DockerException as error:
        raise LabError(f"cannot reach the Docker engine: {error}") from error


@contextmanager
def failing(what: str) -> Iterator[None]:
    """Turn the SDK's errors inside into a ``LabError`` that says ``what`` failed."""
    import docker

    try:
        yield
    except docker.errors.APIError as error:
        raise LabError(f"{what}: {error.explanation or error}") from error
    except docker.errors.DockerException as error:
        raise LabError(f"{what}: {error}") from error


def container(name: str) -> Container | None:
    """The container named ``name``, or None when there is none."""
    return _get(client().containers, name)


def image(reference: str) -> Image | None:
    """The image with this tag or ID, or None when there is none."""
    return _get(client().images, reference)


def network(name: str) -> Network | None:
    return _get(client().networks, name)


def running(name: str) -> bool:
    found = container(name)
    return found is not None and found.attrs["State"]["Running"]


def remove_container(name: str, volumes: bool = False) -> None:
    """Remove ``name`` (running or not, with its anonymous volumes when ``volumes``); gone is fine."""
    import docker

    with failing(f"remove container {name}"):
        try:
            client().api.remove_container(name, force=True, v=volumes)
        except docker.errors.NotFound:
            pass


def remove_volume(name: str) -> None:
    import docker

    with failing(f"remove volume {name}"):
        try:
            client().api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            pass


def remove_image(reference: str) -> bool:
    """Remove an image; False when the engine refuses because a container uses it, or it is gone."""
    import docker

    try:
        client().images.remove(reference)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as error:
        if error.status_code == 409:  # conflict: in use by a container
            return False
        raise LabError(f"remove image {reference}: {error.explanation or error}") from error


def published_port(found: Container, port: int) -> int:
    """The port on 127.0.0.1 that ``port/tcp`` of the container is published on."""
    bindings = (found.attrs["NetworkSettings"]["Ports"] or {}).get(f"{port}/tcp") or []
    for binding in bindings:
        if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
            return int(binding["HostPort"])
    raise LabError(f"{found.name}: port {port} is not published on 127.0.0.1")


def exec_ok(name: str, argv: list[str]) -> bool:
    """Whether ``argv`` exits 0 inside the container ``name``; False too while it cannot run commands
    (starting, stopped, gone): callers wait for it."""
    import docker

    try:
        return client().containers.get(name).exec_run(argv).exit_code == 0
    except docker.errors.APIError:
        return False


def exec_output(name: str, argv: list[str]) -> str:
    """Standard output (and error) of ``argv`` inside ``name``; a non-zero exit is a ``LabError``."""
    with failing(f"{name}: exec {argv[0]}"):
        result = client().containers.get(name).exec_run(argv)
    output = result.output.decode(errors="replace")
    if result.exit_code != 0:
        raise LabError(f"{name}: {' '.join(argv)[:200]} exited {result.exit_code}: {output.strip()[-2000:]}")
    return output


def _get(collection: Any, key: str) -> Any:
    import docker

    with failing(f"inspect {key}"):
        try:
            return collection.get(key)
        except docker.errors.NotFound:
            return None
