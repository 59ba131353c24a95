"""Configuration: the design's values are the defaults; overrides merge; bad input names its key."""

import pytest

from vsa_ops.config import ConfigError, hub_config


def test_defaults_carry_the_design_values():
    hub = hub_config()
    assert [e.line for e in hub.storage.fstab] == [
        "LABEL=cloudimg-rootfs / ext4 discard,commit=30,errors=remount-ro 0 1",
        "LABEL=docker /var/lib/docker ext4 defaults 0 2",
        "LABEL=BOOT /boot ext4 defaults 0 2",
        "LABEL=UEFI /boot/efi vfat umask=0077 0 1",
    ]
    prometheus = hub.observability.prometheus
    assert prometheus.container.image == "prom/prometheus:v2.53.0"
    assert prometheus.command == [
        "--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
        "--storage.tsdb.retention.time=15d", "--storage.tsdb.retention.size=1GB",
        "--web.external-url=https://prometheus.flowbiz.ai", "--web.route-prefix=/",
    ]
    assert [(j.job_name, j.targets[0]) for j in hub.observability.scrape_jobs()] == [
        ("prometheus", "prometheus:9090"), ("loki", "loki:3100"), ("grafana", "grafana:3000"),
        ("node-exporter", "node-exporter:9100"), ("cadvisor", "cadvisor:8080"), ("promtail", "promtail:9080")]
    loki = hub.observability.loki
    period, = loki.schema_periods
    assert (period.store, period.schema_version, period.index_period, loki.retention_period, loki.compaction_interval,
            loki.retention_delete_delay, loki.retention_delete_worker_count) == (
        "boltdb-shipper", "v12", "24h", "30d", "10m", "2h", 150)
    users = {c.container.container_name: (c.container.runs_as.name, c.container.runs_as.uid)
             for stack in hub.builtin_stacks().values() for c in stack.values()}
    assert users["prometheus"] == ("nobody", 65534)
    assert users["loki"] == ("loki", 10001)
    assert users["grafana"] == ("grafana", 472)
    assert users["promtail"] == ("root", 0)
    assert users["reverse-proxy-nginx"] == ("nginx", 101)
    assert users["dashboard-postgres"] == ("postgres", 999)
    assert hub.volume_caps()["obs-prometheus-data"] == 1024**3  # the design's 1GB, from retention_size
    assert hub.observability.loki.retention_period == "30d"
    assert set(hub.networks) == {"flowbiz_ext", "observability_internal", "dashboard-net", "dify-net"}
    assert hub.reverse_proxy.certbot.renew_interval == "12h"
    assert hub.reverse_proxy.reloader.interval == "6h"


def test_override_merges_with_the_defaults_of_its_table():
    hub = hub_config([{"reverse_proxy": {"nginx": {"container": {"image": "nginx:1.27-alpine"}}}},
                      {"observability": {"prometheus": {"retention_time": "30d"}}}])
    nginx = hub.reverse_proxy.nginx.container
    assert nginx.image == "nginx:1.27-alpine"
    assert nginx.container_name == "reverse-proxy-nginx"  # untouched keys keep the design's value
    assert "--storage.tsdb.retention.time=30d" in hub.observability.prometheus.command
    assert "--storage.tsdb.retention.size=1GB" in hub.observability.prometheus.command


def test_later_layers_win():
    hub = hub_config([{"observability": {"loki": {"retention_period": "7d"}}},
                      {"observability": {"loki": {"retention_period": "14d"}}}])
    assert hub.observability.loki.retention_period == "14d"


@pytest.mark.parametrize("override, expected", [
    ({"observability": {"prometheus": {"retention_time": "15x"}}},
     "vsa.observability.prometheus.retention_time: '15x' is not a duration"),
    ({"observability": {"prometheus": {"retension_time": "15d"}}},
     "vsa.observability.prometheus.retension_time: unknown key (value '15d')"),
    ({"observability": {"loki": {"container": {"image": "grafana/loki:latest"}}}},
     "vsa.observability.loki.container.image: must be pinned to a version, not 'latest'"),
    ({"reverse_proxy": {"nginx": {"container": {"ports": ["80"]}}}},
     "vsa.reverse_proxy.nginx.container.ports.0: '80' is not [HOST_IP:]HOST_PORT:CONTAINER_PORT"),
    ({"storage": {"fstab": [{"label": "docker; rm", "mountpoint": "/x", "fstype": "ext4"}]}},
     "vsa.storage.fstab.0.label: must be one fstab field"),
    ({"reverse_proxy": {"nginx": {"security_headers": {"X-Test": 'a"; evil'}}}},
     "vsa.reverse_proxy.nginx.security_headers: value of X-Test must be printable ASCII"),
    ({"reverse_proxy": {"nginx": {"container": {"reload_command": ["nginx", "-s", "reload"]}}}},
     "vsa.reverse_proxy.nginx.container: reload_signal 'HUP' and reload_command ['nginx', '-s', 'reload']: set one"),
    ({"reverse_proxy": {"nginx": {"container": {"reload_signal": "USR1"}}}},
     "vsa.reverse_proxy.nginx.container.reload_signal: "),
])
def test_bad_values_name_the_dotted_key_and_the_value(override, expected):
    with pytest.raises(ConfigError) as error:
        hub_config([override])
    assert str(error.value).startswith(expected), str(error.value)
    assert "\n" not in str(error.value)


def test_alloy_replaces_promtail_as_the_log_shipper():
    shipper = hub_config([{"observability": {"log_shipper": {"kind": "alloy"}}}]).observability.log_shipper
    assert shipper.container.image.startswith("grafana/alloy:")
    assert shipper.container.container_name == "alloy"
    assert shipper.config_file == "config.alloy"


def test_a_container_reloads_by_its_signal_or_by_its_command():
    nginx = hub_config([]).reverse_proxy.nginx.container
    assert (nginx.reload_signal, nginx.reload_command) == ("HUP", [])
    by_command = hub_config([{"reverse_proxy": {"nginx": {"container": {
        "reload_signal": "", "reload_command": ["nginx", "-s", "reload"]}}}}]).reverse_proxy.nginx.container
    assert (by_command.reload_signal, by_command.reload_command) == ("", ["nginx", "-s", "reload"])
