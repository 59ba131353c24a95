"""Shared fixtures. Tests that need a real tool (docker, promtool, a lab image) skip when it is
missing on a developer's machine and FAIL in CI (CI=true), where .ci/setup installs everything."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from vsa_ops.config import hub_config
from vsa_ops.project import load_sources
from vsa_ops.render import render_host

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"VSA_POSTGRES_PASSWORD": "pg-Secret-123", "VSA_GRAFANA_ADMIN_PASSWORD": "graf-Secret-456"}


def pytest_configure(config):
    """The controller's own files (the audit signing key, the audit heads) go to a folder of this test
    session, never to the user's: set before any test or lab fixture appends a record."""
    folder = Path(tempfile.mkdtemp(prefix="vsa-test-controller-"))
    os.environ["XDG_CONFIG_HOME"] = str(folder / "config")
    os.environ["XDG_STATE_HOME"] = str(folder / "state")


def missing(what: str):
    """Skip locally, fail in CI: a missing tool must never pass silently there."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI (installed by .ci/setup)")
    pytest.skip(f"{what} is not available")


@pytest.fixture
def tool():
    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            missing(name)
        return path
    return find


@pytest.fixture
def docker_engine(tool):
    tool("docker")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing("a running Docker engine")
    return "docker"


@pytest.fixture(scope="session")
def sources():
    return load_sources(ROOT)


@pytest.fixture
def render(sources):
    def make(overrides=(), secrets=SECRETS, **kwargs):
        return render_host(hub_config(list(overrides)), sources, host="hub", secrets=secrets, **kwargs)
    return make


@pytest.fixture
def project(tmp_path):
    """A copy of this repository's project files, safe to change."""
    copy = tmp_path / "project"
    for name in ("stacks", "templates", "group_data"):
        shutil.copytree(ROOT / name, copy / name)
    shutil.copy(ROOT / "inventory.py", copy / "inventory.py")
    return copy


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VSA_")} | (env or {})
    return subprocess.run(["vsa-ops", *args], cwd=cwd, env=environment, capture_output=True, text=True)
