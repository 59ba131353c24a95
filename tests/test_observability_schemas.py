"""Point 1 of issue 16: every rendered observability file is checked against the options its pinned
program version accepts (tests/schemas/), so that a misspelled or misplaced key fails here and not on
the server, where Loki, Promtail or Alloy would refuse to start."""

import pytest
import yaml

from tests.config_schemas import check_alloy, check_flags, check_yaml, schema

OBS = "/srv/flowbiz/observability/"
ALLOY = [{"observability": {"log_shipper": {"kind": "alloy"}}}]
TSDB = [{"observability": {"loki": {"store": "tsdb", "schema_version": "v13"}}}]


def loaded(manifest, path):
    return yaml.safe_load(manifest.file(OBS + path).content)


@pytest.mark.parametrize("overrides", [[], TSDB], ids=["boltdb-v12", "tsdb-v13"])
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
