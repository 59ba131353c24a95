"""The Docker engine, the shared networks and the images stacks need."""

from __future__ import annotations

import hashlib
import subprocess
from typing import IO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation

from .shell import argv, script


@operation()
def engine(install: bool):
    """Install the Docker engine and the compose v2 plugin with apt where missing.

    + install: ``plan.install_docker``
    """
    if not install:
        host.noop("docker and compose v2 are installed")
        return
    yield StringCommand(script([
        "export DEBIAN_FRONTEND=noninteractive",
        "command -v dockerd >/dev/null || { apt-get update -qq && apt-get install -y -qq docker.io; }",
        "docker compose version >/dev/null 2>&1 || apt-get install -y -qq docker-compose-plugin "
        "|| apt-get install -y -qq docker-compose-v2 "
        "|| { echo 'vsa-ops: no compose v2 package in the configured apt sources' >&2; exit 1; }",
    ]))


@operation()
def networks(names: list[str]):
    """Create the shared bridge networks (flowbiz_ext) that stacks join as external.

    + names: ``plan.networks``
    """
    if not names:
        host.noop("shared networks exist")
        return
    yield StringCommand(script(f"docker network inspect {argv(n)} >/dev/null 2>&1 || docker network create "
                               f"--driver bridge {argv(n)}" for n in names))


class DockerSave(IO[bytes]):
    """``docker save`` of local images, started only when the upload first reads from it."""

    def __init__(self, images: list[str]):
        self.images = images
        self.process: subprocess.Popen | None = None

    def read(self, size: int = -1) -> bytes:
        if self.process is None:
            self.process = subprocess.Popen(["docker", "save", *self.images], stdout=subprocess.PIPE)
        chunk = self.process.stdout.read(size)
        if not chunk and self.process.wait() != 0:
            raise OSError(f"docker save {' '.join(self.images)} failed")
        return chunk


def local_images(images: list[str]) -> list[str]:
    """Those of ``images`` the controller's Docker engine has."""
    have = []
    for image in images:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0:
            have.append(image)
    return have


@operation()
def ship_images(images: list[str]):
    """Send images the host lacks from the controller (``docker save`` | ``docker load`` over SSH).

    No registry is needed: users build their own images and ship them this way. Images the
    controller lacks are left for ``docker compose up`` to pull.

    + images: ``plan.images``
    """
    shipped = local_images(images)
    if not shipped:
        host.noop("the host has every image the controller can send")
        return
    archive = f"/var/tmp/vsa-ops-images-{hashlib.sha256(' '.join(shipped).encode()).hexdigest()[:12]}.tar"
    yield FileUploadCommand(DockerSave(shipped), archive)
    yield StringCommand(script([f"docker load -q -i {argv(archive)} >/dev/null; rm -f {argv(archive)}"]))
