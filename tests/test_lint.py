"""Lint: each design rule fails on a manifest that breaks it and passes on the bundled configuration."""

import datetime as dt

import pytest

from vsa_ops.config import hub_config
from vsa_ops.lint import lint

from tests.conftest import run_cli


def errors(manifest, overrides=()):
    return [f for f in lint(manifest, hub_config(list(overrides))) if f.severity == "error"]


def rules(findings):
    return {(f.rule, f.stack, f.service) for f in findings}


def test_bundled_configuration_is_clean(render):
    assert errors(render()) == []


def test_end_of_life_components_are_warnings(render):
    findings = lint(render(), hub_config(), today=dt.date(2026, 11, 26))
    eol = {f.service for f in findings if f.rule == "end-of-life"}
    assert {"promtail", "prometheus", "nginx"} <= eol
    assert all(f.severity == "warning" for f in findings if f.rule == "end-of-life")
    before = lint(render(), hub_config(), today=dt.date(2024, 1, 1))
    assert not [f for f in before if f.rule == "end-of-life"]


@pytest.mark.parametrize("override, expected", [
    ({"dashboard": {"postgres": {"container": {"networks": ["dashboard-net", "flowbiz_ext"]}}}},
     ("db-network", "dashboard", "postgres")),
    ({"dashboard": {"postgres": {"container": {"ports": ["5432:5432"]}}}}, ("db-network", "dashboard", "postgres")),
    ({"networks": {"dashboard-net": {"internal": False}}}, ("db-network", "dashboard", "postgres")),
    ({"reverse_proxy": {"reloader": {"container": {"mounts": ["/var/run/docker.sock:/var/run/docker.sock"]}}}},
     ("docker-socket-ro", "reverse-proxy", "reloader")),
    ({"observability": {"grafana": {"container": {"runs_as": {"name": "root", "uid": 0}}}}},
     ("user-model", "observability", "grafana")),
    ({"observability": {"prometheus": {"container": {"command": ["--config.file=/etc/prometheus/prometheus.yml"]}}}},
     ("prometheus-retention", "observability", "prometheus")),
    ({"observability": {"loki": {"delete_request_store": None}}}, ("loki-retention", "observability", "loki")),
    ({"observability": {"loki": {"retention_enabled": False}}}, ("loki-retention", "observability", "loki")),
    ({"observability": {"node_exporter": {"container": {"restart": "no"}}}},
     ("restart-policy", "observability", "node-exporter")),
    ({"observability": {"node_exporter": {"container": {"logging": {"driver": "local"}}}}},
     ("bounded-logs", "observability", "node-exporter")),
    ({"observability": {"grafana": {"container": {"networks": ["flowbiz_ext", "observability_internal",
                                                               "dashboard-net"]}}}},
     ("network-isolation", "observability", "grafana")),
    ({"storage": {"docker_disk": "2GB"}}, ("disk-budget", "", "")),
    # Prometheus' cap is its retention_size: 200GB of 246GB is over the 80 % budget (it once read a shadow copy).
    ({"observability": {"prometheus": {"retention_size": "200GB"}}}, ("disk-budget", "", "")),
])
def test_each_rule_catches_its_violation(render, override, expected):
    found = rules(errors(render([override]), [override]))
    assert expected in found, found


def test_user_model_rule_catches_a_compose_user_on_a_service_that_drops_privileges_itself(render):
    override = {"reverse_proxy": {"nginx": {"container": {"runs_as": {"set_in_compose": True}}}}}
    manifest = render([override])
    # The manifest now sets user 101 for nginx; judged against the design's model it breaks the rule.
    assert ("user-model", "reverse-proxy", "nginx") in rules(errors(manifest))


def test_single_file_mount_of_a_managed_file_is_refused(render):
    override = {"observability": {"prometheus": {"container": {"mounts": [
        "/srv/flowbiz/observability/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "obs-prometheus-data:/prometheus"]}}}}
    assert ("single-file-mount", "observability", "prometheus") in rules(errors(render([override]), [override]))


def test_unpinned_image_in_a_user_stack_is_refused(render):
    from dataclasses import replace
    manifest = render()
    stack = manifest.stack("dashboard")
    compose = dict(stack.compose, services=dict(stack.compose["services"], extra={
        "image": "redis", "restart": "always",
        "logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": "2"}}}))
    manifest = replace(manifest, stacks=tuple(replace(s, compose=compose) if s.name == "dashboard" else s
                                              for s in manifest.stacks))
    found = rules(errors(manifest))
    assert ("pinned-image", "dashboard", "extra") in found
    assert ("db-network", "dashboard", "extra") in found  # a cache on the default network


DIFY = """\
services:
  api:
    image: langgenius/dify-api:0.6.16
    container_name: dify-api
    restart: unless-stopped
    logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}
    networks: [flowbiz_ext, dify-net]
  postgres:
    image: postgres:15-alpine
    container_name: dify-postgres
    restart: unless-stopped
    logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}
    networks: [dify-net, flowbiz_ext]
"""


def test_a_user_stack_with_postgres_on_flowbiz_ext_fails_lint_naming_it(project):
    (project / "stacks" / "dify").mkdir()
    (project / "stacks" / "dify" / "compose.yml").write_text(DIFY)
    result = run_cli("lint", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "error:" in line]
    assert lines == ["hub: error: db-network dify/postgres: joins flowbiz_ext; "
                     "a database joins only its stack's internal network"], result.stdout


def test_the_same_user_stack_passes_once_postgres_leaves_flowbiz_ext(project):
    (project / "stacks" / "dify").mkdir()
    (project / "stacks" / "dify" / "compose.yml").write_text(DIFY.replace("[dify-net, flowbiz_ext]", "[dify-net]"))
    result = run_cli("lint", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hub: ok" in result.stdout


def test_a_prometheus_retention_size_over_the_docker_disk_budget_fails_lint(project):
    (project / "group_data" / "all.py").write_text(
        'vsa = {"observability": {"prometheus": {"retention_size": "200GB"}}}\n')
    result = run_cli("lint", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: disk-budget" in result.stdout and "246GB Docker disk" in result.stdout, result.stdout


@pytest.mark.parametrize("override", [
    {"observability": {"grafana": {"container": {"privileged": True}}}},  # hidden among the design's services
    {"observability": {"cadvisor": {"container": {"root_access_reason": ""}}}},  # the design's, without its reason
    {"observability": {"node_exporter": {"container": {"mounts": [
        {"source": "/", "target": "/host", "read_only": False}]}}}},
    {"observability": {"grafana": {"container": {"cap_add": ["SYS_ADMIN"]}}}},
])
def test_root_equivalent_access_without_a_reason_fails(render, override):
    assert ("root-access", "observability", next(iter(override["observability"])).replace("_", "-")) in rules(
        errors(render([override]), [override]))


def test_root_equivalent_access_with_a_reason_passes_and_the_docker_socket_always_counts(render):
    allowed = {"observability": {"grafana": {"container": {"privileged": True, "root_access_reason": "a test"}}}}
    assert not [f for f in errors(render([allowed]), [allowed]) if f.rule == "root-access"]
    hidden = {"reverse_proxy": {"reloader": {"container": {"root_access_reason": ""}}}}
    findings = lint(render([hidden]), hub_config([hidden]))
    socket = [f for f in findings if f.rule == "root-access" and f.service == "reloader"]
    assert [f.severity for f in socket] == ["warning"] and "even :ro" in socket[0].why


def test_every_service_drops_every_capability_it_does_not_need(render):
    for stack in render().stacks:
        for name, spec in stack.compose["services"].items():
            if spec.get("privileged"):
                continue
            assert spec["cap_drop"] == ["ALL"], name
            assert "no-new-privileges:true" in spec["security_opt"], name
            assert not {"ALL", "SYS_ADMIN"} & set(spec.get("cap_add", [])), name
