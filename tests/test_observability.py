"""Issue 16: the log shipper swap is whole (point 2) and Prometheus scrapes only services it can reach."""

import fnmatch

import yaml

from vsa_ops.config import hub_config
from vsa_ops.lint import lint

OBS = "/srv/flowbiz/observability/"
ALLOY = {"observability": {"log_shipper": {"kind": "alloy"}}}


def scrape_targets(manifest):
    config = yaml.safe_load(manifest.file(OBS + "prometheus/prometheus.yml").content)
    return {job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]] for job in config["scrape_configs"]}


def observability(manifest):
    return next(s for s in manifest.stacks if s.name == "observability").compose["services"]


def test_with_alloy_prometheus_scrapes_alloy_where_alloy_listens(render):
    manifest = render([ALLOY])
    targets = scrape_targets(manifest)
    assert targets["alloy"] == ["alloy:9080"] and "promtail" not in targets
    services = observability(manifest)
    assert "promtail" not in services and services["alloy"]["container_name"] == "alloy"
    assert "--server.http.listen-addr=0.0.0.0:9080" in services["alloy"]["command"]
    assert not [f for f in manifest.files if "promtail" in f.path]
    assert scrape_targets(render())["promtail"] == ["promtail:9080"]


def test_the_shipper_port_moves_its_listener_and_its_scrape_target_together(render):
    manifest = render([ALLOY, {"observability": {"log_shipper": {"http_port": 12345}}}])
    assert scrape_targets(manifest)["alloy"] == ["alloy:12345"]
    assert "--server.http.listen-addr=0.0.0.0:12345" in observability(manifest)["alloy"]["command"]
    promtail = render([{"observability": {"log_shipper": {"http_port": 12345}}}])
    assert scrape_targets(promtail)["promtail"] == ["promtail:12345"]
    assert "http_listen_port: 12345" in promtail.file(OBS + "log-shipper/promtail-config.yml").content


def lint_scrape_targets(render, overrides):
    return [f.why for f in lint(render(overrides), hub_config(overrides)) if f.rule == "scrape-target"]


def test_lint_catches_a_job_whose_target_is_no_reachable_service(render):
    assert lint_scrape_targets(render, []) == [] and lint_scrape_targets(render, [ALLOY]) == []
    jobs = hub_config().observability.prometheus.model_dump()["scrape_jobs"]
    # A job left over from the other shipper, and a service on a network Prometheus is not on.
    extra = [{"job_name": "old-promtail", "targets": ["promtail:9080"]},
             {"job_name": "nginx", "targets": ["reverse-proxy-nginx:80"]}]
    found = lint_scrape_targets(render, [ALLOY, {"observability": {"prometheus": {"scrape_jobs": jobs + extra}}}])
    assert found == ["job old-promtail: target promtail:9080 is no service on a network of prometheus",
                     "job nginx: target reverse-proxy-nginx:80 is no service on a network of prometheus"]


def test_every_log_the_hub_writes_is_matched_by_a_shipper_job(render):
    """Point 3: the proxy's own access and error logs, the per-domain logs, the audit trail, the journal
    (with the machine id its reader needs) and the containers' logs."""
    hub = hub_config()
    shipper = hub.observability.log_shipper
    paths = {job.job_name: hub.audit.jsonl if job.audit_trail else job.path for job in shipper.jobs}
    written = {  # host path -> the job that must ship it
        "/srv/flowbiz/reverse-proxy/logs/access.log": "nginx-proxy-access",
        "/srv/flowbiz/reverse-proxy/logs/error.log": "nginx-proxy-error",
        "/srv/flowbiz/reverse-proxy/logs/domains/a.example.access.json": "nginx-domain-access",
        hub.audit.jsonl: "vsa-audit",
        "/srv/flowbiz/dify/logs/nginx/access.log": "nginx-access",
    }
    for path, job in written.items():
        assert [name for name, glob in paths.items() if glob and fnmatch.fnmatch(path, glob)] == [job], path
    # Rotated files (logrotate's dateext, then compressed) are not read twice.
    assert not [g for g in paths.values() if g and fnmatch.fnmatch("/srv/flowbiz/reverse-proxy/logs/access.log-20261130", g)]
    services = observability(render())
    mounts = {(v["source"], v["target"]) for v in services["promtail"]["volumes"]}
    assert {("/var/log/journal", "/var/log/journal"), ("/etc/machine-id", "/etc/machine-id"),
            ("/var/run/docker.sock", "/var/run/docker.sock"),
            ("/srv/flowbiz/reverse-proxy/logs", "/srv/flowbiz/reverse-proxy/logs"),
            ("/var/log/vsa", "/var/log/vsa")} <= mounts
    assert ("/srv/flowbiz", "/srv/flowbiz") not in mounts  # never its secrets, htpasswd files and keys
    assert {job.source for job in shipper.jobs} == {"journal", "file", "docker"}


def test_the_audit_folders_let_the_dashboard_api_group_read_and_nobody_else(render):
    """Point 4: the audit writes its files 0640; in these setgid folders they take the API's group."""
    manifest = render()
    api_uid = hub_config().dashboard.api.container.runs_as.uid
    folders = {d.path: (d.owner, d.group, d.mode) for d in manifest.directories}
    assert folders["/var/log/vsa"] == folders["/var/lib/vsa"] == (0, api_uid, "2750")
    api = next(s for s in manifest.stacks if s.name == "dashboard").compose["services"]["api"]
    binds = {(v["source"], v["target"], v.get("read_only")) for v in api["volumes"]}
    assert {("/var/log/vsa", "/var/log/vsa", True), ("/var/lib/vsa", "/var/lib/vsa", True)} <= binds
