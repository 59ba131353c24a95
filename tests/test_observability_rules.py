"""The alert rules Prometheus loads (stacks/observability/prometheus/alerts.yml) pass their promtool unit
tests (tests/promtool/alerts-test.yml): each alert once firing and once quiet."""

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "stacks/observability/prometheus/alerts.yml"
UNIT_TESTS = ROOT / "tests/promtool/alerts-test.yml"
WANTED = {"ScrapeTargetDown", "ContainerRestarting", "CertificateExpiringSoon", "DiskAlmostFull",
          "PrometheusStorageNearCap", "SiteProbeFailing", "DriftFound", "DeployFailed"}


def promtool_test(promtool, unit_tests: Path):
    return subprocess.run([promtool, "test", "rules", str(unit_tests)], capture_output=True, text=True)


def test_the_alert_rules_pass_their_promtool_unit_tests(tool):
    result = promtool_test(tool("promtool"), UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == WANTED
    firing, quiet = set(), set()
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == quiet == WANTED


def test_a_changed_threshold_fails_the_unit_tests(tool, tmp_path):
    (tmp_path / "stacks/observability/prometheus").mkdir(parents=True)
    (tmp_path / "tests/promtool").mkdir(parents=True)
    (tmp_path / "stacks/observability/prometheus/alerts.yml").write_text(
        RULES.read_text().replace("< 14 * 86400", "< 7 * 86400"))
    shutil.copy(UNIT_TESTS, tmp_path / "tests/promtool/alerts-test.yml")
    result = promtool_test(tool("promtool"), tmp_path / "tests/promtool/alerts-test.yml")
    assert result.returncode != 0 and "CertificateExpiringSoon" in result.stdout + result.stderr


def test_prometheus_loads_the_rules_from_its_config_folder(render):
    manifest = render()
    config = yaml.safe_load(manifest.file("/srv/flowbiz/observability/prometheus/prometheus.yml").content)
    assert config["rule_files"] == ["alerts.yml"]
    assert manifest.file("/srv/flowbiz/observability/prometheus/alerts.yml").content == RULES.read_text()
