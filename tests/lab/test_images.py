"""Lab images built from Debian packages (vsa_ops.lab.images, from vsa_ops.lab.recipes).

The ``lab`` tests build real images and run containers: they need root and a running dockerd.
Without dockerd they fail naming it (left out with --without-docker, see tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import subprocess
import uuid

import pytest

from vsa_ops.lab import images
from vsa_ops.lab.recipe import FILES_DIR

from tests.conftest import missing

# ---------------------------------------------------------------------------------------------
# Recipes (no docker needed)


def test_every_recipe_file_exists_and_hashes():
    for name, recipe in images.RECIPES.items():
        assert recipe.tags, name
        if recipe.base == "busybox" and recipe.keep:
            assert recipe.packages, f"{name}: keep needs packages to take the paths from"
        for file in recipe.files:
            if file.src:
                assert (FILES_DIR / file.src).is_file(), f"{name}: {file.src}"
        if name != "vps":  # the vps recipe hashes the compose plugin of this machine
            assert len(images.recipe_hash(recipe)) == 64


def test_recipe_hash_follows_the_recipe():
    loki = images.RECIPES["loki"]
    assert images.recipe_hash(loki) == images.recipe_hash(dataclasses.replace(loki))
    assert images.recipe_hash(loki) != images.recipe_hash(dataclasses.replace(loki, cmd=("-config.file=/x",)))


def test_placeholders_share_one_mechanism():
    names = ["grafana", "loki", "promtail", "cadvisor", "demo-app"]
    for name in names:
        recipe = images.RECIPES[name]
        assert recipe.base == "busybox" and not recipe.packages, name
        assert recipe.entrypoint == ("/lab/placeholder",), name
    assert dict(images.RECIPES["loki"].env)["PLACEHOLDER_CONFIG_FLAG"] == "config.file"
    assert images.RECIPES["loki"].user == "loki"


def test_unknown_image_name_is_an_error():
    with pytest.raises(ValueError, match="unknown lab image"):
        images.ensure_images(["no-such-image"], log=lambda _: None)


# ---------------------------------------------------------------------------------------------
# Real builds and containers


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def _image_id(tag: str) -> str:
    return _docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


@pytest.fixture(scope="module")
def docker_ready(request) -> None:
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
        ok, why = proc.returncode == 0, proc.stderr.strip()[-500:]
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, why = False, str(exc)
    if not ok:
        missing(request.config, f"a running Docker engine (dockerd: {why})")


@pytest.fixture(scope="module")
def built(docker_ready) -> dict[str, str]:
    return images.ensure_images(["nginx", "loki", "demo-app"])


@pytest.fixture
def container_name():
    name = f"vsa-test-{uuid.uuid4().hex[:10]}"
    yield name
    _docker("rm", "--force", "--volumes", name, check=False)


@pytest.mark.lab
def test_nginx_config_test_passes(built):
    proc = _docker("run", "--rm", built["nginx"], "nginx", "-t", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "test is successful" in proc.stderr


@pytest.mark.lab
def test_nginx_runs_as_the_official_images_user(built):
    proc = _docker("run", "--rm", built["nginx"], "id", "nginx")
    assert proc.stdout.strip() == "uid=101(nginx) gid=101(nginx) groups=101(nginx)"


@pytest.mark.lab
def test_second_call_is_cached(built):
    before = {name: _image_id(tag) for name, tag in built.items()}
    messages: list[str] = []
    again = images.ensure_images(list(built), log=messages.append)
    assert again == built
    assert {name: _image_id(tag) for name, tag in again.items()} == before
    assert messages == []


@pytest.mark.lab
def test_a_changed_recipe_is_rebuilt_and_the_old_image_removed(built, monkeypatch):
    tag = f"vsa-test/variant:{uuid.uuid4().hex[:8]}"
    recipe = dataclasses.replace(images.RECIPES["demo-app"], tags=(tag,))
    monkeypatch.setitem(images.RECIPES, "variant", recipe)
    try:
        images.ensure_images(["variant"], log=lambda _: None)
        first = _image_id(tag)
        env = dict(recipe.env) | {"PLACEHOLDER_NAME": "variant-2"}
        monkeypatch.setitem(images.RECIPES, "variant", dataclasses.replace(recipe, env=tuple(env.items())))
        messages: list[str] = []
        images.ensure_images(["variant"], log=messages.append)
        assert any("building" in m for m in messages)
        assert _image_id(tag) != first
        assert _docker("image", "inspect", first, check=False).returncode != 0
    finally:
        _docker("rmi", tag, check=False)


@pytest.mark.lab
def test_loki_placeholder_fails_without_its_config(built):
    proc = _docker("run", "--rm", built["loki"], check=False)
    assert proc.returncode == 1
    assert "/etc/loki/local-config.yaml" in proc.stderr


@pytest.mark.lab
def test_loki_placeholder_serves_ready_with_its_config(built, tmp_path, container_name):
    config = tmp_path / "loki.yaml"
    config.write_text("auth_enabled: false\n")
    config.chmod(0o644)
    _docker("run", "-d", "--name", container_name, "-v", f"{config}:/etc/loki/local-config.yaml:ro", built["loki"])
    probe = "for i in $(seq 50); do wget -qO- http://127.0.0.1:3100/ready && exit 0; sleep 0.1; done; exit 1"
    proc = _docker("exec", container_name, "sh", "-c", probe, check=False)
    assert proc.returncode == 0, _docker("logs", container_name, check=False).stderr
    assert "loki" in proc.stdout
    assert _docker("exec", container_name, "id", "-u").stdout.strip() == "10001"


@pytest.mark.lab
def test_demo_app_answers_any_path(built, container_name):
    _docker("run", "-d", "--name", container_name, "--hostname", "demo-host", built["demo-app"])
    probe = "for i in $(seq 50); do wget -qO- http://127.0.0.1:8080/any/path?x=1 && exit 0; sleep 0.1; done; exit 1"
    proc = _docker("exec", container_name, "sh", "-c", probe, check=False)
    assert proc.returncode == 0, _docker("logs", container_name, check=False).stderr
    assert "demo-app" in proc.stdout and "demo-host" in proc.stdout and "/any/path" in proc.stdout
