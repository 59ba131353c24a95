"""Shared fixtures. A test that needs a real tool (docker, promtool, a running Docker engine, the
lab) FAILS naming what is missing (.ci/setup installs everything), in CI or not. A developer without
them passes --without-docker on purpose: the tests marked lab or tools are then deselected, and any
other whose tool is missing is skipped, saying so."""

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


WITHOUT_DOCKER = "--without-docker"


def pytest_addoption(parser):
    parser.addoption(WITHOUT_DOCKER, action="store_true",
                     help="leave out on purpose the tests that need Docker, the lab VPS or real tools: deselect "
                          "those marked lab or tools, skip any other whose tool is missing. Without it, a "
                          "missing tool or engine fails the test that needs it.")


def pytest_collection_modifyitems(config, items):
    if not config.getoption(WITHOUT_DOCKER):
        return
    needing = [item for item in items if item.get_closest_marker("lab") or item.get_closest_marker("tools")]
    if needing:
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if item not in needing]


def missing(config: pytest.Config, what: str):
    """A test's tool is missing: it fails, naming it, unless the run was told --without-docker."""
    if config.getoption(WITHOUT_DOCKER):
        pytest.skip(f"{what} is not available ({WITHOUT_DOCKER})")
    pytest.fail(f"{what} is required: install it (bash .ci/setup), or pass {WITHOUT_DOCKER} to leave out the "
                f"tests that need it", pytrace=False)


@pytest.fixture
def tool(request):
    def find(name: str) -> str:
        path = shutil.which(name)
        if path is None:
            missing(request.config, name)
        return path
    return find


@pytest.fixture
def local_host(tmp_path, tool, monkeypatch):
    """A project whose one host is this machine (pyinfra's @local), its audit files under tmp_path:
    (project folder, audit JSONL, audit database)."""
    for name in ("sh", "flock", "dd", "base64", "gzip", "sha256sum", "tail", "sqlite3"):
        tool(name)
    jsonl, database = tmp_path / "log" / "audit.jsonl", tmp_path / "lib" / "audit.db"
    settings = {"vsa": {"audit": {"jsonl": str(jsonl), "database": str(database)}}}
    (tmp_path / "inventory.py").write_text(f"hubs = [('@local', {settings!r})]\n")
    for name in [n for n in os.environ if n.startswith("VSA_")]:
        monkeypatch.delenv(name)
    return tmp_path, jsonl, database


@pytest.fixture
def docker_engine(request, tool):
    tool("docker")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing(request.config, "a running Docker engine")
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
