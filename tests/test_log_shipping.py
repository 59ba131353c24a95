"""Log shipping: labels only from bounded fields (both shippers), the Alloy stream label set where the
meta label exists, and positions that let one shipper take over from the other."""

import json
import re

import pytest
import yaml

from vsa_ops.config import ConfigError, hub_config
from vsa_ops.config.log_shipping import BOUNDED_FIELDS
from vsa_ops.lint import lint

SHIPPER = "/srv/flowbiz/observability/log-shipper/"
ALLOY = [{"observability": {"log_shipper": {"kind": "alloy"}}}]
REMOTE_ADDR = {"observability": {"log_shipper": {"jobs": [
    {"job_name": "nginx-access", "source": "file", "path": "/srv/flowbiz/*/logs/nginx/access*.log",
     "format": "json", "labels": ["remote_addr", "method"]}]}}}


def promtail_labels(text):
    """(job, label) -> (kind of source, field) as the rendered Promtail configuration wires them."""
    found = {}
    for job in yaml.safe_load(text)["scrape_configs"]:
        name = job["job_name"]
        source = "journal" if "journal" in job else "docker" if "docker_sd_configs" in job else "file"
        for rule in job.get("relabel_configs", []):
            if rule.get("source_labels"):
                found[name, rule["target_label"]] = source, rule["source_labels"][0]
        extracted = {}
        for stage in job.get("pipeline_stages", []):
            (kind, spec), = stage.items()
            if kind == "json":
                extracted.update(spec["expressions"])
            elif kind == "regex":
                for group in re.findall(r"\(\?P<(\w+)>", spec["expression"]):
                    extracted[group] = extracted[spec["source"]]
            elif kind == "labels":
                for label, key in spec.items():
                    found[name, label] = source, extracted[key or label]
    return found


def _blocks(text, kind):
    """Label -> body of each top-level Alloy block of this kind (blocks end at a line holding only '}')."""
    return dict(re.findall(rf'^{re.escape(kind)} "(\w+)" \{{\n(.*?)^\}}', text, re.M | re.S))


def alloy_labels(text):
    found = {}
    relabels = _blocks(text, "loki.relabel")
    sources = {**{k: ("journal", v) for k, v in _blocks(text, "loki.source.journal").items()},
               **{k: ("docker", v) for k, v in _blocks(text, "loki.source.docker").items()}}
    for block in (*sources.values(), *((None, b) for b in _blocks(text, "loki.process").values())):
        body = block[1]
        job = re.search(r'job = "([^"]+)"', body).group(1)
        if block[0] is not None:
            rules = relabels[re.search(r"relabel_rules\s*= loki\.relabel\.(\w+)\.rules", body).group(1)]
            for field, label in re.findall(r'source_labels = \["([^"]+)"\].*?target_label\s*= "([^"]+)"', rules, re.S):
                found[job, label] = block[0], field
            continue
        extracted = {}
        for key, field in re.findall(r'"(\w+)" = "(\w+)"', "".join(re.findall(r"stage\.json \{(.*?)\}\n  \}", body, re.S))):
            extracted[key] = field
        for source, group in re.findall(r'source\s*= "(\w+)"\n\s*expression = "\^\(\?P<(\w+)>', body):
            extracted[group] = extracted[source]
        labels = re.search(r"stage\.labels \{\s*values = \{(.*?)\}", body, re.S)
        for label, key in re.findall(r'"(\w+)" = "(\w*)"', labels.group(1) if labels else ""):
            found[job, label] = "file", extracted[key or label]
    return found


def rendered_labels(render, overrides=()):
    promtail = render(list(overrides)).file(SHIPPER + "promtail-config.yml").content
    alloy = render([*ALLOY, *overrides]).file(SHIPPER + "config.alloy").content
    return promtail_labels(promtail), alloy_labels(alloy)


def unbounded(found):
    return {key for key, (source, field) in found.items() if field not in BOUNDED_FIELDS[source]}


def test_both_shippers_label_only_bounded_fields_and_the_same_ones(render):
    promtail, alloy = rendered_labels(render)
    assert unbounded(promtail) == set() and unbounded(alloy) == set()
    assert promtail == alloy
    assert {label for job, label in promtail if job == "nginx-domain-access"} == {"domain", "method", "status_class"}
    assert {label for job, label in promtail if job == "nginx-access"} == {"method", "status_class"}


def test_a_label_fed_from_the_client_address_is_caught_in_both_renderings(render):
    promtail, alloy = rendered_labels(render, [REMOTE_ADDR])
    assert unbounded(promtail) == unbounded(alloy) == {("nginx-access", "remote_addr")}


def test_lint_names_the_job_and_the_unbounded_label():
    findings = [f for f in lint_findings([REMOTE_ADDR]) if f.rule == "log-label-cardinality"]
    assert [(f.severity, f.service) for f in findings] == [("error", "promtail")]
    assert "job nginx-access: label remote_addr is fed from remote_addr" in findings[0].why
    assert not [f for f in lint_findings([]) if f.rule == "log-label-cardinality"]


def lint_findings(overrides):
    from vsa_ops.project import load_sources
    from vsa_ops.render import render_host
    from tests.conftest import ROOT, SECRETS
    hub = hub_config(overrides)
    return lint(render_host(hub, load_sources(ROOT), host="hub", secrets=SECRETS), hub)


def _go_replace(replacement):
    return re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", replacement)


def run_promtail_pipeline(job, line):
    """The labels Promtail's json/regex/template/labels stages give one line (Go's regexp and text/template
    reduced to the forms vsa-ops renders)."""
    extracted, labels = {}, {}
    for stage in job["pipeline_stages"]:
        (kind, spec), = stage.items()
        if kind == "json":
            record = json.loads(line)
            extracted.update({key: record[field] for key, field in spec["expressions"].items() if field in record})
        elif kind == "regex" and spec["source"] in extracted:
            match = re.search(spec["expression"], str(extracted[spec["source"]]))
            extracted.update(match.groupdict() if match else {})
        elif kind == "template" and spec["source"] in extracted:
            pattern, replacement = re.search(r'regexReplaceAll "(.*?)" \.Value "(.*?)"', spec["template"]).groups()
            extracted[spec["source"]] = re.sub(pattern, _go_replace(replacement), extracted[spec["source"]])
        elif kind == "labels":
            labels.update({label: extracted[key or label] for label, key in spec.items() if (key or label) in extracted})
    return labels


@pytest.mark.parametrize("method, status, expected", [
    ("GET", "404", {"method": "GET", "status_class": "4xx"}),
    ("POST", "201", {"method": "POST", "status_class": "2xx"}),
    ("XYZZY", "000", {}),
])
def test_an_access_line_keeps_its_unbounded_fields_in_the_line(render, method, status, expected):
    config = yaml.safe_load(render().file(SHIPPER + "promtail-config.yml").content)
    job = {j["job_name"]: j for j in config["scrape_configs"]}["nginx-domain-access"]
    line = json.dumps({"domain": "example.com", "remote_addr": "203.0.113.9", "method": method, "status": status,
                       "uri": "/a?b=c", "user_agent": "curl/8", "request_id": "f00", "request_time": "0.004"})
    assert run_promtail_pipeline(job, line) == {"domain": "example.com", **expected}


def test_alloy_sets_the_stream_label_in_rules_that_loki_source_docker_applies(render):
    text = render(ALLOY).file(SHIPPER + "config.alloy").content
    docker = _blocks(text, "loki.source.docker")["docker_containers"]
    rules = _blocks(text, "loki.relabel")[re.search(r"relabel_rules\s*= loki\.relabel\.(\w+)\.rules", docker).group(1)]
    assert re.search(r'source_labels = \["__meta_docker_container_log_stream"\]\n.*\n.*\n\s*target_label\s*= "stream"',
                     rules)
    # discovery.relabel sees only the discovered containers, never the per-line stream: it only narrows
    # the targets to per-container labels (the positions' keys), and keeps those the rules read.
    narrowing = _blocks(text, "discovery.relabel")["docker_containers"]
    assert "log_stream" not in narrowing and "target_label" not in narrowing
    kept = re.search(r'regex\s*= "(.*)"', narrowing).group(1).split("|")
    assert set(re.findall(r'source_labels = \["(\w+)"\]', rules)) - set(kept) == {"__meta_docker_container_log_stream"}
    assert re.search(r"targets\s*= discovery\.relabel\.docker_containers\.output", docker)


def test_both_shippers_keep_their_positions_on_the_persistent_volume(render):
    promtail_manifest, alloy_manifest = render(), render(ALLOY)
    positions = yaml.safe_load(promtail_manifest.file(SHIPPER + "promtail-config.yml").content)["positions"]["filename"]
    text = alloy_manifest.file(SHIPPER + "config.alloy").content
    sources = _blocks(text, "loki.source.file")
    assert len(sources) == 6
    for body in sources.values():
        assert re.search(r"legacy_positions_file = (\S+)", body).group(1) == json.dumps(positions)
        # every file read before the swap has its position carried over: one without is new, read whole
        assert re.search(r"tail_from_end\s*= false", body)
    # Alloy's positions key files by path and labels: label-free targets make the key ({path}, "{}").
    assert re.findall(r"path_targets = \[\{ (\w+) =", text) == ["__path__"] * 6
    assert "job" not in "".join(re.findall(r"path_targets = (.*)", text))
    state = positions.rsplit("/", 1)[0]
    for manifest, service in ((promtail_manifest, "promtail"), (alloy_manifest, "alloy")):
        compose = yaml.safe_load(manifest.file("/srv/flowbiz/observability/compose.yml").content)
        spec = compose["services"][service]
        volumes = [v for v in spec["volumes"] if v["target"] == state]
        assert [v["type"] for v in volumes] == ["volume"] and volumes[0]["source"] in compose["volumes"]
    command = yaml.safe_load(alloy_manifest.file("/srv/flowbiz/observability/compose.yml").content)[
        "services"]["alloy"]["command"]
    assert f"--storage.path={state}" in command


def test_positions_off_a_named_volume_are_refused():
    with pytest.raises(ConfigError, match="state_dir"):
        hub_config([{"observability": {"log_shipper": {"state_dir": "/tmp/positions"}}}])


def test_a_docker_label_from_a_per_network_field_is_refused():
    # Alloy's docker position keys hold the target's labels: only per-container fields keep them known.
    job = {"job_name": "docker-containers", "source": "docker",
           "labels": [{"name": "ip", "field": "__meta_docker_network_ip"}]}
    with pytest.raises(ConfigError, match="__meta_docker_container_"):
        hub_config([{"observability": {"log_shipper": {"jobs": [job]}}}])
