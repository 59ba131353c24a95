"""The rendered files pass the real tools: docker compose, promtool (and nginx in test_nginx.py)."""

import subprocess

import pytest

from vsa_ops.writer import write_manifest

pytestmark = pytest.mark.tools

STACKS = ["dashboard", "observability", "reverse-proxy"]


@pytest.fixture
def rendered(render, tmp_path):
    out = tmp_path / "out"
    write_manifest(render(), out)
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_passes_docker_compose_config(rendered, tool, stack):
    tool("docker")
    compose = rendered / "srv/flowbiz" / stack / "compose.yml"
    result = subprocess.run(["docker", "compose", "-f", str(compose), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_docker_compose_config_rejects_a_broken_stack(project, tool, tmp_path):
    """The check above can fail: compose refuses a service with an unknown key."""
    tool("docker")
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  web:\n    image: nginx:1.25-alpine\n    restart_policy: always\n")
    result = subprocess.run(["docker", "compose", "-f", str(broken), "config", "-q"], capture_output=True, text=True)
    assert result.returncode != 0


def test_alloy_stack_passes_docker_compose_config(render, tmp_path, tool):
    tool("docker")
    write_manifest(render([{"observability": {"log_shipper": {"kind": "alloy"}}}]), tmp_path)
    compose = tmp_path / "srv/flowbiz/observability/compose.yml"
    result = subprocess.run(["docker", "compose", "-f", str(compose), "config"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "grafana/alloy:" in result.stdout


def test_prometheus_config_passes_promtool(rendered, tool):
    promtool = tool("promtool")
    config = rendered / "srv/flowbiz/observability/prometheus/prometheus.yml"
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_what_prometheus_would(rendered, tool):
    promtool = tool("promtool")
    config = rendered / "srv/flowbiz/observability/prometheus/prometheus.yml"
    config.write_text(config.read_text().replace("scrape_interval:", "scrape_intervall:"))
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
    assert result.returncode != 0
