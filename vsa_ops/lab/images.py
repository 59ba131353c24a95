"""Docker images for the lab, built from Debian packages: no image registry is needed.

``recipes`` says what each image holds; ``rootfs`` builds its tree (as root: debootstrap, mount,
chroot); this module imports the tree into the controller's Docker engine and keeps it:

- ``tar -c`` of the tree streams into the engine's image import without a tag, then the image is
  tagged: an interrupted build never leaves a tag behind;
- every image carries the label ``vsa.recipe=<sha256 of its recipe and the files it adds>``, and
  ``ensure_images`` rebuilds an image only when that hash differs from the one on the tagged image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from . import engine
from .chroot import CACHE_DIR, locked, remove_tree, workdir
from .errors import BuildError
from .recipe import DEFAULT_PATH, File, Recipe
from .recipes import RECIPES
from .rootfs import build_tree

# Bump to rebuild every image when the build steps change (the hash covers only recipes and files).
BUILDER_VERSION = "1"
LABEL = "vsa.recipe"


def recipe_hash(recipe: Recipe) -> str:
    """sha256 of the recipe, the content of every file it adds, and BUILDER_VERSION."""
    digest = hashlib.sha256(f"vsa-ops lab image builder {BUILDER_VERSION}\n".encode())
    digest.update(json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode())
    for file in recipe.files:
        digest.update(f"\n{file.path}\n".encode())
        digest.update(_file_sha256(file).encode())
    return digest.hexdigest()


def ensure_images(names: Iterable[str] | None = None, *, log: Callable[[str], object] = print) -> dict[str, str]:
    """Build the lab images that are missing or stale; return {name: tag} for ``names`` (default: all).

    Images whose ``vsa.recipe`` label matches are left alone, so a second call only inspects.
    """
    selected = list(RECIPES) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in selected if n not in RECIPES]
    if unknown:
        raise ValueError(f"unknown lab image(s): {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    digests = {name: recipe_hash(RECIPES[name]) for name in selected}

    todo = _stale(selected, digests)
    if todo:
        if os.geteuid() != 0:
            raise BuildError("building lab images needs root (debootstrap, mount, chroot)")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with locked(CACHE_DIR / "lock"):
            todo = _stale(selected, digests)  # another run may have built them meanwhile
            remove_tree(CACHE_DIR / "build", keep_root=True)  # leftovers of a killed run
            updated: set[str] = set()
            for name in todo:
                _build(name, RECIPES[name], digests[name], updated, log)
    return {name: RECIPES[name].tag for name in selected}


# ---------------------------------------------------------------------------------------------


def _stale(selected: list[str], digests: dict[str, str]) -> list[str]:
    """The names to build; re-tags an up-to-date image when only a secondary tag is missing."""
    todo = []
    for name in selected:
        tags = RECIPES[name].tags
        found = engine.image(tags[0])
        if found is None or found.labels.get(LABEL) != digests[name]:
            todo.append(name)
            continue
        for tag in tags[1:]:
            if tag not in found.tags:
                _tag(found.id, tag)
    return todo


def _build(name: str, recipe: Recipe, digest: str, updated: set[str], log: Callable[[str], object]) -> None:
    old_ids = {found.id for found in map(engine.image, recipe.tags) if found is not None}
    start = time.monotonic()
    log(f"lab image {recipe.tag}: building ({name})")
    with workdir(name) as work:
        root = build_tree(work, recipe, updated, log)
        log(f"lab image {recipe.tag}: importing")
        image_id = _import(root, name, recipe, digest)
    for tag in recipe.tags:
        _tag(image_id, tag)
    for old in old_ids - {image_id}:
        engine.remove_image(old)  # refused (and kept) while a container uses it
    size = engine.client().images.get(image_id).attrs["Size"]
    log(f"lab image {recipe.tag}: built in {time.monotonic() - start:.1f} s, {size / 1e6:.0f} MB")


def _import(root: Path, name: str, recipe: Recipe, digest: str) -> str:
    """Stream a tar of the tree into the engine's image import; returns the new image's ID (untagged)."""
    env = dict(recipe.env)
    env.setdefault("PATH", DEFAULT_PATH)
    changes = [f"LABEL {LABEL}={digest}", f"LABEL vsa.image={name}"]
    changes += [f"ENV {key}={json.dumps(value)}" for key, value in env.items()]
    if recipe.entrypoint is not None:
        changes.append(f"ENTRYPOINT {json.dumps(list(recipe.entrypoint))}")
    if recipe.cmd is not None:
        changes.append(f"CMD {json.dumps(list(recipe.cmd))}")
    if recipe.user:
        changes.append(f"USER {recipe.user}")
    if recipe.workdir:
        changes.append(f"WORKDIR {recipe.workdir}")
    changes += [f"EXPOSE {port}" for port in recipe.expose]
    if recipe.volumes:
        changes.append(f"VOLUME {json.dumps(list(recipe.volumes))}")

    tar_argv = ["tar", "-C", str(root), "--numeric-owner", "--exclude=./proc/*", "--exclude=./sys/*",
                "--exclude=./dev/*", "-cf", "-", "."]  # fmt: skip
    with subprocess.Popen(tar_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as tar:
        assert tar.stdout is not None
        with engine.failing(f"lab image {recipe.tag}: import"):
            answer = engine.client().api.import_image(src=tar.stdout, changes=changes, stream_src=True)
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar_rc = tar.wait()
    image_id = _imported_id(answer)
    if tar_rc != 0:  # the image may be truncated: never tag it
        engine.remove_image(image_id)
        raise BuildError(f"tar of the image tree failed ({tar_rc}): {tar_err.strip()[-2000:]}")
    return image_id


def _imported_id(answer: str) -> str:
    """The image ID from the engine's answer to an import: JSON messages, the last one its status."""
    messages = [json.loads(line) for line in answer.splitlines() if line.strip()]
    for message in messages:
        if "error" in message:
            raise BuildError(f"docker import failed: {message['error']}")
    status = messages[-1].get("status", "") if messages else ""
    if not status.startswith("sha256:"):
        raise BuildError(f"docker import answered no image ID: {answer.strip()[-500:]}")
    return status


def _tag(image_id: str, tag: str) -> None:
    from docker.utils import parse_repository_tag  # the SDK, on first use (see engine)

    repository, version = parse_repository_tag(tag)
    with engine.failing(f"docker tag {tag}"):
        engine.client().api.tag(image_id, repository, version or "latest", force=True)


def _file_sha256(file: File) -> str:
    if file.text:
        return hashlib.sha256(file.text.encode()).hexdigest()
    path = file.source
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{file.path} comes from {path}, which does not exist")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
