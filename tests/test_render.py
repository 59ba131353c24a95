"""Render: one host's configuration becomes a manifest of files, directories, fstab, networks, stacks."""

import json

import pytest
import yaml

from vsa_ops.domains import Domain
from vsa_ops.render import RenderError

HASH = "$2y$10$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def test_tree_carries_owners_and_modes_with_private_auth_and_postgres(render):
    dirs = {d.path: d for d in render().directories}
    auth = dirs["/srv/flowbiz/reverse-proxy/nginx/auth"]
    assert (auth.owner, auth.group, auth.mode) == (0, 101, "0750")
    pgdata = dirs["/srv/flowbiz/dashboard/data/postgres"]
    assert (pgdata.owner, pgdata.group, pgdata.mode) == (999, 999, "0700")
    assert dirs["/srv/flowbiz/reverse-proxy/logs/domains"].owner == 101
    for path in ("/srv/flowbiz/reverse-proxy/nginx/conf.d", "/srv/flowbiz/reverse-proxy/letsencrypt",
                 "/srv/flowbiz/reverse-proxy/certbot-www", "/srv/flowbiz/observability/data/grafana-provisioning",
                 "/var/log/vsa", "/var/lib/vsa"):
        assert path in dirs


def test_every_stack_is_rendered_with_the_design_names(render):
    manifest = render()
    assert [s.name for s in manifest.stacks] == ["dashboard", "observability", "reverse-proxy"]
    compose = yaml.safe_load(manifest.file("/srv/flowbiz/reverse-proxy/compose.yml").content)
    assert compose["name"] == "reverse-proxy"
    nginx = compose["services"]["nginx"]
    assert nginx["container_name"] == "reverse-proxy-nginx"
    assert nginx["ports"] == ["80:80", "443:443"]
    assert {(v["source"], v["target"], v["read_only"]) for v in nginx["volumes"]} == {
        ("/srv/flowbiz/reverse-proxy/nginx/conf.d", "/etc/nginx/conf.d", True),
        ("/srv/flowbiz/reverse-proxy/nginx/snippets", "/etc/nginx/snippets", True),
        ("/srv/flowbiz/reverse-proxy/nginx/auth", "/etc/nginx/auth", True),
        ("/srv/flowbiz/reverse-proxy/letsencrypt", "/etc/letsencrypt", True),
        ("/srv/flowbiz/reverse-proxy/certbot-www", "/var/www/certbot", True),
        ("/srv/flowbiz/reverse-proxy/logs", "/var/log/nginx", False),
    }
    assert compose["networks"] == {"flowbiz_ext": {"name": "flowbiz_ext", "external": True}}
    certbot = compose["services"]["certbot"]["entrypoint"][-1]
    assert "certbot renew --webroot -w /var/www/certbot" in certbot and "sleep 12h" in certbot
    obs = yaml.safe_load(manifest.file("/srv/flowbiz/observability/compose.yml").content)
    assert obs["networks"]["observability_internal"] == {"name": "observability_internal", "internal": True}
    assert obs["volumes"]["obs-prometheus-data"] == {"name": "obs-prometheus-data"}
    assert obs["services"]["prometheus"]["user"] == "65534:65534"
    dash = yaml.safe_load(manifest.file("/srv/flowbiz/dashboard/compose.yml").content)
    assert dash["services"]["postgres"]["networks"] == ["dashboard-net"]
    assert "ports" not in dash["services"]["postgres"]


def test_a_prometheus_setting_changes_only_prometheus_files(render):
    before = {f.path: f.content for f in render().files}
    after = {f.path: f.content for f in render([{"observability": {"prometheus": {"scrape_interval": "30s"}}}]).files}
    assert [p for p in before if before[p] != after[p]] == ["/srv/flowbiz/observability/prometheus/prometheus.yml"]


def test_a_changed_file_concerns_exactly_the_services_mounting_it(render):
    manifest = render()
    concerned = manifest.services_mounting("/srv/flowbiz/observability/prometheus/prometheus.yml")
    assert [(stack.name, service.name) for stack, service in concerned] == [("observability", "prometheus")]
    vhost = manifest.services_mounting("/srv/flowbiz/reverse-proxy/nginx/conf.d/example.com.conf")
    assert {service.container_name for _, service in vhost} == {"reverse-proxy-nginx"}
    assert (vhost[0][1].reload_signal, vhost[0][1].reloads) == ("HUP", True)
    secrets = manifest.services_mounting("/srv/flowbiz/dashboard/secrets/postgres_password")
    assert {service.name for _, service in secrets} == {"postgres", "api"}


def test_secrets_are_files_private_to_their_readers(render):
    manifest = render()
    pg = manifest.file("/srv/flowbiz/dashboard/secrets/postgres_password")
    assert (pg.content, pg.mode, pg.owner, pg.group, pg.sensitive) == ("pg-Secret-123", "0640", 0, 64901, True)
    api = manifest.file("/srv/flowbiz/dashboard/secrets/api_database_password")
    grafana = manifest.file("/srv/flowbiz/observability/secrets/grafana_admin_password")
    assert (api.group, grafana.group, grafana.mode, grafana.sensitive) == (64902, 64903, "0640", True)
    # Each reader's group is vsa-ops' own account, and only its container gets it.
    assert {(u.name, u.uid) for u in manifest.users} >= {("vsa-dashboard-db", 64901), ("vsa-dashboard-api", 64902),
                                                          ("vsa-grafana", 64903)}
    services = {name: service for stack in manifest.stacks for name, service in stack.compose["services"].items()}
    assert {name: s["group_add"] for name, s in services.items() if "group_add" in s} == {
        "postgres": ["64901"], "api": ["64902"], "grafana": ["64903"]}
    # group_add survives only where compose sets the user (an entrypoint that drops to its user loses it).
    assert services["postgres"]["user"] == "999:999"
    # No secret value appears in any other file.
    for item in manifest.files:
        if not item.sensitive:
            assert "pg-Secret-123" not in item.content and "graf-Secret-456" not in item.content


def test_a_missing_secret_fails_and_names_it(render):
    with pytest.raises(RenderError, match="missing secret VSA_GRAFANA_ADMIN_PASSWORD"):
        render(secrets={"VSA_POSTGRES_PASSWORD": "x"})


def test_placeholders_stand_in_for_secrets_when_none_are_given(render):
    pg = render(secrets=None).file("/srv/flowbiz/dashboard/secrets/postgres_password")
    assert pg.content == "<secret VSA_POSTGRES_PASSWORD>"


def test_disabled_stacks_and_their_secrets_are_left_out(render):
    manifest = render([{"stacks": ["reverse-proxy"]}], secrets={})
    assert [s.name for s in manifest.stacks] == ["reverse-proxy"]
    assert not [f for f in manifest.files if f.sensitive]


def test_daemon_json_bounds_logs_and_keeps_containers_on_restart(render):
    daemon = json.loads(render().file("/etc/docker/daemon.json").content)
    assert daemon["log-driver"] == "json-file"
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon["live-restore"] is True


def test_a_domain_gets_a_vhost_and_a_private_htpasswd(render):
    domain = Domain(name="Example.COM", upstream="demo-app:8080", auth={"alice": HASH})
    manifest = render(domains=[domain])
    vhost = manifest.file("/srv/flowbiz/reverse-proxy/nginx/conf.d/example.com.conf").content
    assert "return 301 https://$host$request_uri;" in vhost
    assert "access_log /var/log/nginx/domains/example.com.access.json json_detailed;" in vhost
    assert "include /etc/nginx/snippets/security-headers.conf;" in vhost
    assert "set $vsa_upstream http://demo-app:8080;" in vhost
    auth = manifest.file("/srv/flowbiz/reverse-proxy/nginx/auth/example.com.htpasswd")
    assert (auth.content, auth.mode, auth.group, auth.sensitive) == (f"alice:{HASH}\n", "0640", 101, True)


def test_a_domain_without_certificate_gets_an_http_only_vhost(render):
    domain = Domain(name="example.com", upstream="demo-app:8080")
    vhost = render(domains=[domain], certificates=[]).file(
        "/srv/flowbiz/reverse-proxy/nginx/conf.d/example.com.conf").content
    assert "listen 443" not in vhost and "ssl_certificate" not in vhost
    assert "acme-challenge.conf" in vhost


def test_a_stack_template_must_exist_for_an_enabled_stack(render):
    with pytest.raises(RenderError, match="no stacks/dify/ folder"):
        render([{"stacks": ["reverse-proxy", "dify"]}])


def test_loki_config_carries_the_design_values_in_a_form_loki_3_accepts(render):
    loki = yaml.safe_load(render().file("/srv/flowbiz/observability/loki/loki-config.yml").content)
    period = loki["schema_config"]["configs"][0]
    assert (period["store"], period["schema"], period["index"]["period"]) == ("boltdb-shipper", "v12", "24h")
    assert loki["compactor"] | {"working_directory": None} == {
        "working_directory": None, "compaction_interval": "10m", "retention_enabled": True,
        "retention_delete_delay": "2h", "retention_delete_worker_count": 150, "delete_request_store": "filesystem"}
    assert loki["limits_config"] == {"retention_period": "30d", "allow_structured_metadata": False}
    assert "shared_store" not in json.dumps(loki)


def test_promtail_config_has_the_eight_jobs_and_their_labels(render):
    config = yaml.safe_load(render().file("/srv/flowbiz/observability/log-shipper/promtail-config.yml").content)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["system-journal", "nginx-access", "nginx-proxy-access", "nginx-proxy-error",
                          "nginx-domain-access", "nginx-error", "vsa-audit", "docker-containers"]
    assert jobs["system-journal"]["journal"]["path"] == "/var/log/journal"
    assert jobs["nginx-domain-access"]["static_configs"][0]["labels"]["__path__"] == \
        "/srv/flowbiz/reverse-proxy/logs/domains/*.access.json"
    assert set(jobs["vsa-audit"]["pipeline_stages"][-1]["labels"]) == {"actor", "action", "result", "vps_id"}
    assert set(jobs["nginx-domain-access"]["pipeline_stages"][-1]["labels"]) == {"domain", "method", "status_class"}
    targets = {r["target_label"] for r in jobs["docker-containers"]["relabel_configs"]}
    assert targets == {"job", "container", "compose_service", "compose_project", "stream"}
    assert config["positions"]["filename"].startswith("/var/lib/promtail/")


def test_alloy_config_replaces_promtail_config(render):
    paths = {f.path for f in render([{"observability": {"log_shipper": {"kind": "alloy"}}}]).files}
    assert "/srv/flowbiz/observability/log-shipper/config.alloy" in paths
    assert "/srv/flowbiz/observability/log-shipper/promtail-config.yml" not in paths


def test_grafana_provisions_prometheus_and_loki(render):
    manifest = render()
    sources = yaml.safe_load(manifest.file(
        "/srv/flowbiz/observability/data/grafana-provisioning/datasources/datasources.yml").content)
    assert {(d["type"], d["url"]) for d in sources["datasources"]} == {
        ("prometheus", "http://prometheus:9090"), ("loki", "http://loki:3100")}
    boards = yaml.safe_load(manifest.file(
        "/srv/flowbiz/observability/data/grafana-provisioning/dashboards/dashboards.yml").content)
    assert boards["providers"][0]["options"]["path"] == "/etc/grafana/provisioning/dashboards"


def test_nginx_http_context_follows_the_reliability_standards(render):
    http = render().file("/srv/flowbiz/reverse-proxy/nginx/conf.d/00-http.conf").content
    assert "log_format json_detailed escape=json" in http
    for field in ("domain", "method", "uri", "status", "bytes", "request_time", "upstream_addr", "user_agent"):
        assert f'"{field}":' in http
    assert "limit_req_zone $binary_remote_addr zone=perip:10m rate=10r/s;" in http
    assert "limit_req_status 429;" in http and "server_tokens off;" in http
    assert "ssl_stapling" not in http
    headers = render().file("/srv/flowbiz/reverse-proxy/nginx/snippets/security-headers.conf").content
    hsts = render().file("/srv/flowbiz/reverse-proxy/nginx/snippets/hsts.conf").content
    assert 'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;' in hsts
    assert "Strict-Transport-Security" not in headers  # HTTP servers include this one too
    assert 'add_header X-Frame-Options "DENY" always;' in headers
    assert 'add_header X-Content-Type-Options "nosniff" always;' in headers


def test_logrotate_rotates_the_nginx_logs_as_nginx_and_reopens_them(render):
    text = render().file("/etc/logrotate.d/vsa-ops").content
    assert "/srv/flowbiz/reverse-proxy/logs/domains/*.access.json" in text
    assert "su 101 101" in text and "docker kill --signal=USR1 reverse-proxy-nginx" in text
    assert "audit.jsonl {" not in text  # the chained audit trail is never rotated


def test_a_site_with_its_own_rate_has_its_own_zone_and_only_it(render):
    """README "Rate limits per site": the site's own zone, named site.<domain>, of site_zone_size, BURST one
    second's worth when not given (at least 1); a named zone or off defines no zone."""
    sites = [Domain(name="api.example.com", upstream="demo-app:8080", rate_limit="50r/s"),
             Domain(name="hook.example.com", upstream="demo-app:8080", rate_limit="30r/m"),
             Domain(name="shop.example.com", upstream="demo-app:8080", rate_limit="auth"),
             Domain(name="open.example.com", upstream="demo-app:8080", rate_limit="off")]
    manifest = render(domains=sites)

    def vhost(name):
        return manifest.file(f"/srv/flowbiz/reverse-proxy/nginx/conf.d/{name}.conf").content
    assert "limit_req_zone $binary_remote_addr zone=site.api.example.com:1m rate=50r/s;" in vhost("api.example.com")
    assert "limit_req zone=site.api.example.com burst=50 nodelay;" in vhost("api.example.com")
    assert "limit_req zone=site.hook.example.com burst=1 nodelay;" in vhost("hook.example.com")
    assert "limit_req_zone" not in vhost("shop.example.com") + vhost("open.example.com")
    assert "limit_req zone=auth burst=10 nodelay;" in vhost("shop.example.com")
    assert "limit_req " not in vhost("open.example.com")
