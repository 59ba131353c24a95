"""Point 1 of issue 16: every rendered observability file is checked against the options its pinned
program version accepts (tests/schemas/), so that a misspelled or misplaced key fails here and not on
the server, where Loki, Promtail or Alloy would refuse to start."""

import json

import pytest
import yaml

from vsa_ops.config import ConfigError, hub_config

from tests.config_schemas import check_alloy, check_flags, check_yaml, schema

OBS = "/srv/flowbiz/observability/"
ALLOY = [{"observability": {"log_shipper": {"kind": "alloy"}}}]
V13 = {"start": "2026-12-01", "store": "tsdb", "schema_version": "v13"}
TSDB_LATER = [{"observability": {"loki": {"schema_periods": [
    {"start": "2024-01-01", "store": "boltdb-shipper", "schema_version": "v12"}, V13]}}}]
TSDB_ONLY = [{"observability": {"loki": {"schema_periods": [V13]}}}]


def loaded(manifest, path):
    return yaml.safe_load(manifest.file(OBS + path).content)


@pytest.mark.parametrize("overrides", [[], TSDB_LATER, TSDB_ONLY], ids=["boltdb-v12", "then-tsdb-v13", "tsdb-v13"])
def test_the_loki_config_has_only_options_loki_3_0_accepts(render, overrides):
    assert check_yaml(loaded(render(overrides), "loki/loki-config.yml"), schema("loki-3.0.0.yml")) == []


def test_a_misspelled_key_in_the_loki_config_fails(render):
    broken = yaml.safe_load(render().file(OBS + "loki/loki-config.yml").content.replace(
        "retention_delete_delay:", "retention_delete_dealy:"))
    assert check_yaml(broken, schema("loki-3.0.0.yml")) == ["compactor.retention_delete_dealy: unknown key"]


def test_a_misplaced_or_mistyped_loki_option_fails(render):
    config = loaded(render(), "loki/loki-config.yml")
    config["server"]["retention_period"] = config["limits_config"].pop("retention_period")
    config["compactor"]["retention_enabled"] = "yes"
    assert sorted(check_yaml(config, schema("loki-3.0.0.yml"))) == [
        "compactor.retention_enabled: expected boolean, got 'yes'", "server.retention_period: unknown key"]


def test_the_promtail_config_has_only_options_promtail_3_0_accepts(render):
    config = loaded(render(), "log-shipper/promtail-config.yml")
    assert check_yaml(config, schema("promtail-3.0.0.yml")) == []
    config["scrape_configs"][0]["journal"]["max_agee"] = "12h"
    config["scrape_configs"][2]["pipeline_stages"][0]["jsonn"] = {}
    assert check_yaml(config, schema("promtail-3.0.0.yml")) == [
        "scrape_configs[0].journal.max_agee: unknown key",
        "scrape_configs[2].pipeline_stages[0]: must hold exactly one key, got ['json', 'jsonn']",
        "scrape_configs[2].pipeline_stages[0].jsonn: unknown key"]


def test_the_alloy_config_has_only_what_alloy_accepts_and_wires_existing_components(render):
    text = render(ALLOY).file(OBS + "log-shipper/config.alloy").content
    assert check_alloy(text, schema("alloy-v1.5.1.yml")) == []
    broken = text.replace("tail_from_end ", "tail_from_start ", 1).replace(
        "loki.write.default.receiver", "loki.write.default.reciever", 1)
    problems = check_alloy(broken, schema("alloy-v1.5.1.yml"))
    assert any(p.endswith(".tail_from_start: unknown attribute") for p in problems)
    assert any(p.endswith("loki.write exports no reciever") for p in problems)
    assert check_alloy(text.replace('loki.process "', 'loki.proces "', 1), schema("alloy-v1.5.1.yml"))


@pytest.mark.parametrize("path,part", [("data/grafana-provisioning/datasources/datasources.yml", "datasources"),
                                       ("data/grafana-provisioning/dashboards/dashboards.yml", "dashboards")])
def test_grafana_provisioning_has_only_keys_grafana_10_4_reads(render, path, part):
    config = loaded(render(), path)
    assert check_yaml(config, schema("grafana-10.4.0.yml")[part]) == []
    config[part if part == "datasources" else "providers"][0]["is_default"] = True
    assert check_yaml(config, schema("grafana-10.4.0.yml")[part])


def test_cadvisor_gets_only_flags_v0_49_1_knows(render):
    hub = render().stacks
    compose = next(s for s in hub if s.name == "observability").compose
    command = compose["services"]["cadvisor"]["command"]
    assert command and check_flags(command, schema("cadvisor-v0.49.1.yml")) == []
    assert check_flags([*command, "--docker-only=true"], schema("cadvisor-v0.49.1.yml")) == [
        "--docker-only=true: unknown flag -docker-only"]


def test_a_v13_tsdb_period_is_appended_and_leaves_the_existing_one_as_it_was(render):
    before = loaded(render(), "loki/loki-config.yml")
    after = loaded(render(TSDB_LATER), "loki/loki-config.yml")
    assert after["schema_config"]["configs"][0] == before["schema_config"]["configs"][0]
    assert after["schema_config"]["configs"][1]["store"] == "tsdb"
    assert after["storage_config"]["boltdb_shipper"] == before["storage_config"]["boltdb_shipper"]
    assert "tsdb_shipper" in after["storage_config"]
    # Loki 3.0 checks structured metadata against the active period, which the day decides.
    assert after["limits_config"]["allow_structured_metadata"] is False
    assert loaded(render(TSDB_ONLY), "loki/loki-config.yml")["limits_config"]["allow_structured_metadata"] is True


def test_periods_out_of_order_are_refused():
    with pytest.raises(ConfigError, match="schema_periods: periods must start on distinct days"):
        hub_config([{"observability": {"loki": {"schema_periods": [V13, {"start": "2024-01-01"}]}}}])


DASHBOARDS = OBS + "data/grafana-provisioning/dashboards/"


def dashboard_problems(dashboard: dict, datasources: dict[str, str]) -> list[str]:
    """Beyond the JSON model's keys: every panel queries a provisioned datasource of its kind, has
    queries, and sits inside the 24-column grid without overlapping another."""
    problems = check_yaml(dashboard, schema("grafana-10.4.0.yml")["dashboard"])
    cells: dict[tuple[int, int], int] = {}
    for panel in dashboard.get("panels", []):
        where = f"panel {panel.get('id')} ({panel.get('title')})"
        source = panel.get("datasource") or {}
        if datasources.get(source.get("uid")) != source.get("type"):
            problems.append(f"{where}: datasource {source} is not provisioned")
        if not panel.get("targets") or any(not t.get("expr") or t.get("datasource", source) != source
                                           for t in panel["targets"]):
            problems.append(f"{where}: needs queries (expr) on the panel's datasource")
        grid = panel.get("gridPos") or {}
        if not (1 <= grid.get("w", 0) <= 24 and grid.get("x", -1) >= 0 and grid["x"] + grid["w"] <= 24
                and grid.get("h", 0) >= 1 and grid.get("y", -1) >= 0):
            problems.append(f"{where}: gridPos {grid} is outside the 24-column grid")
            continue
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problems.append(f"{where}: overlaps panel {cells[x, y]}")
                    break
                cells[x, y] = panel["id"]
            else:
                continue
            break
    ids = [p.get("id") for p in dashboard.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    return problems


def test_the_dashboards_are_provisioned_and_valid_for_grafana_10_4(render):
    manifest = render()
    datasources = {d["uid"]: d["type"] for d in loaded(manifest, "data/grafana-provisioning/datasources/datasources.yml")[
        "datasources"]}
    dashboards = {f.path.rsplit("/", 1)[1]: json.loads(f.content) for f in manifest.files
                  if f.path.startswith(DASHBOARDS) and f.path.endswith(".json")}
    assert set(dashboards) == {"hub.json", "sites.json", "audit.json"}
    for name, dashboard in dashboards.items():
        assert dashboard_problems(dashboard, datasources) == [], name
    provider = loaded(manifest, "data/grafana-provisioning/dashboards/dashboards.yml")["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/provisioning/dashboards"
    exprs = " ".join(t["expr"] for d in dashboards.values() for p in d["panels"] for t in p["targets"])
    for wanted in ("node_filesystem_avail_bytes", "node_memory_MemAvailable_bytes", "container_memory_working_set_bytes",
                   'job="nginx-domain-access"', "status_class", "unwrap request_time", 'job="vsa-audit"'):
        assert wanted in exprs


def test_a_broken_dashboard_fails(render):
    manifest = render()
    hub = json.loads(manifest.file(DASHBOARDS + "hub.json").content)
    hub["panels"][0]["datasource"] = {"type": "prometheus", "uid": "prom"}
    hub["panels"][1]["gridPos"] = {"h": 8, "w": 12, "x": 6, "y": 0}
    hub["panels"][2]["target"] = hub["panels"][2].pop("targets")
    problems = dashboard_problems(hub, {"prometheus": "prometheus", "loki": "loki"})
    assert "panels[2].target: unknown key" in problems
    assert any("datasource {'type': 'prometheus', 'uid': 'prom'} is not provisioned" in p for p in problems)
    assert any(p.startswith("panel 2 (Memory used): overlaps panel 1") for p in problems)
    assert any(p.startswith("panel 3 (Container memory (working set)): needs queries") for p in problems)
