"""The log shipper cut-over: positions converted both ways between Promtail 3.0.0 and Alloy 1.5.1, in the
formats their sources write (the fixtures below are written as yaml.v2 marshals those structures, see
vsa_ops/shipper_positions.py), the host program's write half on a scratch folder, and the deploy that
stops the old shipper, converts and starts the new one only when the kind changes."""

from __future__ import annotations

import re
import stat
import subprocess

import pytest
import yaml

from vsa_ops.config import hub_config
from vsa_ops.host_programs import program_command
from vsa_ops.shipper_positions import (INSPECT_FORMAT, Container, PositionsError, carry_over, cut_over_from,
                                       docker_labels, label_set_string, layout, parse_read, positions_archive,
                                       read_alloy, read_promtail)

LOKI = "3f1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
WEB = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d"
GONE = "0" * 64
CURSOR = "s=6a1e0f2b8c3d4e5f6a7b8c9d0e1f2a3b;i=4d2;b=0f9e8d7c6b5a49382716a5b4c3d2e1f0;m=1a2b3c;t=62a1b2c3d4e5f;x=9c8b7a6d"
CONTAINERS = [
    Container(LOKI, "/loki", "observability_default", {"com.docker.compose.project": "observability",
                                                        "com.docker.compose.service": "loki"}),
    Container(WEB, "/demo-app", "bridge", {}),
]

# Promtail 3.0.0: yaml.v2 Marshal of File{Positions map[string]string}, keys sorted, numbers quoted.
PROMTAIL = f"""positions:
  /srv/flowbiz/reverse-proxy/logs/access.log: "48213"
  /srv/flowbiz/reverse-proxy/logs/domains/shop.example.com.access.json: "9120"
  /srv/flowbiz/reverse-proxy/logs/error.log: "512"
  /srv/flowbiz/shop/logs/nginx/access.log: "77"
  /var/log/old-app.log: "10"
  /var/log/vsa/audit.jsonl: "20480"
  cursor-{GONE}: "1764400000"
  cursor-{LOKI}: "1764500000"
  cursor-{WEB}: "1764500123"
  cursor-system-journal: {CURSOR}
"""

LOKI_LABELS = (f'{{__meta_docker_container_id="{LOKI}", '
               '__meta_docker_container_label_com_docker_compose_project="observability", '
               '__meta_docker_container_label_com_docker_compose_service="loki", '
               '__meta_docker_container_name="/loki", job="docker-containers"}')

# Alloy 1.5.1: yaml.v2 Marshal of File{Positions map[Entry]string}: every key a {path, labels} mapping
# (a complex key), long single-quoted labels folded at 80 columns as yaml.v2's emitter folds them.
ALLOY = {
    "loki.source.file.nginx_domain_access/positions.yml": """positions:
  ? path: /srv/flowbiz/reverse-proxy/logs/domains/shop.example.com.access.json
    labels: '{}'
  : "9500"
  ? path: /srv/flowbiz/reverse-proxy/logs/domains/shop.example.com.access.json
    labels: '{env="prod"}'
  : "9400"
""",
    # Alloy's own legacy conversion copies every Promtail entry into every component: the copies of
    # other jobs' files are stale and must not count.
    "loki.source.file.nginx_proxy_access/positions.yml": """positions:
  ? path: /srv/flowbiz/reverse-proxy/logs/access.log
    labels: '{}'
  : "50000"
  ? path: /srv/flowbiz/reverse-proxy/logs/domains/shop.example.com.access.json
    labels: '{}'
  : "1"
""",
    "loki.source.journal.system_journal/positions.yml": f"""positions:
  ? path: cursor-loki.source.journal.system_journal
    labels: ""
  : {CURSOR}
""",
    "loki.source.docker.docker_containers/positions.yml": f"""positions:
  ? path: cursor-{LOKI}
    labels: '{{__meta_docker_container_id="{LOKI}",
      __meta_docker_container_label_com_docker_compose_project="observability",
      __meta_docker_container_label_com_docker_compose_service="loki", __meta_docker_container_name="/loki",
      job="docker-containers"}}'
  : "1764600000"
  ? path: cursor-{WEB}
    labels: '{{__meta_docker_container_id="{WEB}", __meta_docker_container_name="/demo-app", job="docker-containers"}}'
  : "1764600100"
""",
}


@pytest.fixture
def shipped():
    hub = hub_config()
    return layout(hub.observability.log_shipper, hub.audit.jsonl)


def alloy_entries(files):
    return {name: read_alloy(text) for name, text in files.items()}


def test_promtail_positions_become_each_alloy_component_own(shipped):
    files = alloy_entries(carry_over("promtail", {"positions.yaml": PROMTAIL}, shipped, CONTAINERS))
    # one file per component, so no older file of Alloy's survives a second swap
    assert set(files) == {f"{job.component}/positions.yml" for job in shipped.jobs}
    assert files["loki.source.file.nginx_proxy_access/positions.yml"] == {
        ("/srv/flowbiz/reverse-proxy/logs/access.log", "{}"): "48213"}
    assert files["loki.source.file.nginx_domain_access/positions.yml"] == {
        ("/srv/flowbiz/reverse-proxy/logs/domains/shop.example.com.access.json", "{}"): "9120"}
    assert files["loki.source.file.nginx_access/positions.yml"] == {
        ("/srv/flowbiz/shop/logs/nginx/access.log", "{}"): "77"}
    assert files["loki.source.file.vsa_audit/positions.yml"] == {("/var/log/vsa/audit.jsonl", "{}"): "20480"}
    assert files["loki.source.file.nginx_error/positions.yml"] == {}
    assert files["loki.source.journal.system_journal/positions.yml"] == {
        ("cursor-loki.source.journal.system_journal", ""): CURSOR}
    # containers keyed with the labels Alloy's target carries; a container that is gone is left out
    assert files["loki.source.docker.docker_containers/positions.yml"] == {
        (f"cursor-{LOKI}", LOKI_LABELS): "1764500000",
        (f"cursor-{WEB}", f'{{__meta_docker_container_id="{WEB}", __meta_docker_container_name="/demo-app", '
                          'job="docker-containers"}'): "1764500123"}


def test_alloy_positions_become_promtail_ones(shipped):
    (name, text), = carry_over("alloy", ALLOY, shipped, CONTAINERS).items()
    assert name == "positions.yaml"
    assert read_promtail(text) == {
        "/srv/flowbiz/reverse-proxy/logs/access.log": "50000",
        # the same file under two label sets: the earlier offset, never past an unsent line
        "/srv/flowbiz/reverse-proxy/logs/domains/shop.example.com.access.json": "9400",
        "cursor-system-journal": CURSOR,
        f"cursor-{LOKI}": "1764600000",
        f"cursor-{WEB}": "1764600100",
    }
    # as Promtail's yaml.v2 reads it: a plain map of strings
    assert all(isinstance(v, str) for v in yaml.safe_load(text)["positions"].values())


def test_a_round_trip_keeps_every_position_a_job_reads(shipped):
    there = carry_over("promtail", {"positions.yaml": PROMTAIL}, shipped, CONTAINERS)
    back = read_promtail(carry_over("alloy", there, shipped, CONTAINERS)["positions.yaml"])
    unread = {"/var/log/old-app.log", f"cursor-{GONE}"}  # no job reads these; no container has that id
    assert back == {k: v for k, v in read_promtail(PROMTAIL).items() if k not in unread}


def test_the_docker_position_labels_are_what_the_rendered_relabel_rule_keeps(render, shipped):
    text = render([{"observability": {"log_shipper": {"kind": "alloy"}}}]).file(
        "/srv/flowbiz/observability/log-shipper/config.alloy").content
    body = re.search(r'^discovery\.relabel "docker_containers" \{\n(.*?)^\}', text, re.M | re.S).group(1)
    assert 'action = "labelkeep"' in body
    kept = re.compile(yaml.safe_load(re.search(r"regex\s*= (\".*\")", body).group(1)))
    job, = (job for job in shipped.jobs if job.source == "docker")
    for container in CONTAINERS:
        discovered = {**container.meta_labels(), "__address__": "172.18.0.2:3100", "__meta_docker_network_ip": "x"}
        target = {name: value for name, value in discovered.items() if kept.fullmatch(name)}
        assert docker_labels(job, container) == label_set_string({**target, "job": job.name})


def test_labels_are_written_as_prometheus_does():
    assert label_set_string({}) == "{}"
    assert label_set_string({"b": 'say "hi"\\', "a": "x"}) == '{a="x", b="say \\"hi\\"\\\\"}'


def test_unreadable_positions_name_the_file(shipped):
    with pytest.raises(PositionsError, match="loki.source.journal.system_journal/positions.yml"):
        carry_over("alloy", {"loki.source.journal.system_journal/positions.yml": "positions: [1, 2"}, shipped, [])
    with pytest.raises(PositionsError, match="not numbers"):
        carry_over("alloy", {"loki.source.file.nginx_error/positions.yml":
                             "positions:\n  ? {path: /srv/flowbiz/x/logs/nginx/error.log, labels: '{}'}\n  : abc\n"
                             "  ? {path: /srv/flowbiz/x/logs/nginx/error.log, labels: '{a=\"b\"}'}\n  : '1'\n"},
                   shipped, [])


def test_no_positions_yet_gives_empty_files(shipped):
    files = carry_over("promtail", {}, shipped, [])
    assert all(read_alloy(text) == {} for text in files.values()) and len(files) == len(shipped.jobs)
    assert read_promtail(carry_over("alloy", {}, shipped, [])["positions.yaml"]) == {}


def test_the_read_half_output_is_parsed():
    from tests.test_deploy_plan import framed

    import base64
    output = framed([("folder", "/var/lib/docker/volumes/observability_obs-promtail-data/_data"),
                     ("positions", "positions.yaml " + base64.b64encode(PROMTAIL.encode()).decode()),
                     ("container", f'["{LOKI}","/loki","observability_default",'
                                   '{"com.docker.compose.project":"observability","com.docker.compose.service":"loki"}]'),
                     ("container", f'["{WEB}","/demo-app","bridge",null]')])
    found = parse_read(output)
    assert found.folder.endswith("obs-promtail-data/_data")
    assert found.files == {"positions.yaml": PROMTAIL}
    assert found.containers == CONTAINERS
    assert "{{json .Config.Labels}}" in INSPECT_FORMAT


# --- the host program's write half ------------------------------------------------------------------

def write(root, folder, files):
    return subprocess.run(["sh", "-c", program_command("shipper_cutover", str(root), "write", str(folder))],
                          input=positions_archive(files).encode(), capture_output=True, timeout=60)


def test_the_write_half_replaces_each_file_root_only(tmp_path, shipped):
    folder = tmp_path / "volume"
    (folder / "loki.source.file.nginx_access").mkdir(parents=True)
    (folder / "loki.source.file.nginx_access/positions.yml").write_text("positions: stale\n")
    (folder / "positions.yaml").write_text(PROMTAIL)
    files = carry_over("promtail", {"positions.yaml": PROMTAIL}, shipped, CONTAINERS)
    done = write(tmp_path, folder, files)
    assert done.returncode == 0, done.stderr
    for name, text in files.items():
        assert (folder / name).read_text() == text
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / name).parent.stat().st_mode) == 0o750
    assert (folder / "positions.yaml").read_text() == PROMTAIL  # the old shipper's, kept for a rollback
    assert [p.name for p in folder.iterdir() if p.name.startswith(".vsa-cutover")] == []


def test_the_write_half_follows_no_link_the_shipper_left(tmp_path, shipped):
    folder, elsewhere = tmp_path / "volume", tmp_path / "etc"
    folder.mkdir()
    elsewhere.mkdir()
    (folder / "loki.source.journal.system_journal").symlink_to(elsewhere)
    done = write(tmp_path, folder, carry_over("promtail", {}, shipped, []))
    assert done.returncode == 1 and b"symbolic link" in done.stderr
    assert list(elsewhere.iterdir()) == []


# --- when the deploy cuts over ------------------------------------------------------------------

@pytest.mark.parametrize("kind, containers, expected", [
    ("alloy", {("observability", "promtail"): "running", ("observability", "loki"): "running"},
     ("observability", "promtail")),
    ("promtail", {("observability", "alloy"): "exited"}, ("observability", "alloy")),
    ("alloy", {("observability", "alloy"): "running"}, None),  # done: compose removed the old one
    ("alloy", {}, None),  # a fresh host
    ("alloy", {("other", "promtail"): "running"}, None),  # another stack's Promtail is not ours
])
def test_the_cut_over_runs_only_when_the_kind_changes(render, kind, containers, expected):
    manifest = render([{"observability": {"log_shipper": {"kind": kind}}}])
    assert cut_over_from(manifest.stacks, containers, kind) == expected


ALLOY_KIND = {"observability": {"log_shipper": {"kind": "alloy"}}}


@pytest.fixture
def fake_swap(monkeypatch):
    """A deploy on pyinfra's @fake connector of an Alloy configuration to a host running Promtail: the
    commands it sends, in order, with their stdin; the host's read half answers with ``PROMTAIL``."""
    from tests.test_deploy_plan import STATE_READ, framed, state_output
    from tests.conftest import ROOT, SECRETS
    from tests.test_plan import converged
    from vsa_ops.planning import SALT
    from vsa_ops.project import load_sources
    from vsa_ops.render import render_host
    from tests.fake_deploy import fake_deploy
    import base64

    monkeypatch.setenv("VSA_PROJECT", str(ROOT))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)

    def run(host_data, running=(), positions=PROMTAIL, fails=False):
        state = converged(render_host(hub_config(list(running)), load_sources(ROOT), host="@fake/hub",
                                      secrets=SECRETS), SALT)
        state.images.add("grafana/alloy:v1.5.1")
        read = framed([("folder", "/var/lib/docker/volumes/observability_obs-promtail-data/_data"),
                       ("positions", "positions.yaml " + base64.b64encode(positions.encode()).decode()),
                       ("container", f'["{LOKI}","/loki","observability_default",'
                                     '{"com.docker.compose.project":"observability",'
                                     '"com.docker.compose.service":"loki"}]')])
        responses = {STATE_READ: state_output(state), "# vsa-ops log shipper cut-over": read}
        pyinfra_state, _, commands = fake_deploy(monkeypatch, {"fake_responses": responses, "fake_delay": 0,
                                                               **host_data}, may_fail=True)
        assert bool(pyinfra_state.failed_hosts) == fails
        sent = [(command, arguments.get("_stdin") or "") for command, arguments in commands]
        sudo = [bool(arguments.get("_sudo")) for _, arguments in commands]
        if host_data.get("_sudo"):
            assert all(sudo), "the cut-over's commands run as the deploy's own: under sudo when the host's data asks"
        return sent

    return run


def step(command: str) -> str:
    """What a sent command is: the host program's name, and the cut-over's mode."""
    first = re.search(r"^# vsa-ops ([^.:(]+)", command, re.M).group(1).strip()
    mode = re.match(r"set -- \S+ (read|write|start) ", command)
    return f"{first}: {mode.group(1)}" if mode and "cut-over" in first else first


def test_a_changed_kind_stops_the_old_shipper_converts_then_starts_the_new(fake_swap):
    import base64
    import gzip
    import io
    import tarfile

    sent = fake_swap({"vsa": ALLOY_KIND, "_sudo": True})
    assert [step(c) for c, _ in sent] == ["state read", "run lock", "log shipper cut-over, the host's half: read",
                                          "log shipper cut-over, the host's half: write",
                                          "files-and-stacks transaction", "run lock"]
    read, write = sent[2][0], sent[3][0]
    assert "read observability promtail /var/lib/promtail" in read
    assert "write /var/lib/docker/volumes/observability_obs-promtail-data/_data" in write
    archive = tarfile.open(fileobj=io.BytesIO(gzip.decompress(base64.b64decode(sent[3][1]))))
    written = {m.name: archive.extractfile(m).read().decode() for m in archive.getmembers()}
    assert read_alloy(written["loki.source.docker.docker_containers/positions.yml"]) == {
        (f"cursor-{LOKI}", LOKI_LABELS): "1764500000"}
    assert read_alloy(written["loki.source.journal.system_journal/positions.yml"]) == {
        ("cursor-loki.source.journal.system_journal", ""): CURSOR}
    assert "compose -p observability" in base64.b64decode(
        next(line.split()[2] for line in sent[4][1].splitlines() if line.startswith("act "))).decode()
    # a transaction that fails after the cut-over ends its undo by starting the old shipper again
    resume = [base64.b64decode(line.split()[1]).decode() for line in sent[4][1].splitlines()
              if line.startswith("resume ")]
    assert resume == ["docker ps -aq --no-trunc --filter label=com.docker.compose.project=observability "
                      "--filter label=com.docker.compose.service=promtail | xargs -r docker start > /dev/null"]


def test_a_deploy_that_keeps_the_kind_sends_no_cut_over(fake_swap):
    sent = fake_swap({"vsa": {**ALLOY_KIND, "observability": {**ALLOY_KIND["observability"],
                                                               "prometheus": {"scrape_interval": "30s"}}}},
                     running=[ALLOY_KIND])
    assert [step(c) for c, _ in sent] == ["state read", "files-and-stacks transaction"]


def test_a_cut_over_that_cannot_convert_starts_the_old_shipper_again_and_stops_the_deploy(fake_swap):
    sent = fake_swap({"vsa": ALLOY_KIND}, positions="positions: [unclosed", fails=True)
    assert [step(c) for c, _ in sent] == ["state read", "run lock", "log shipper cut-over, the host's half: read",
                                          "log shipper cut-over, the host's half: start"]
    assert "start observability promtail" in sent[3][0]


# --- the host program's read half, against a stand-in `docker` command ------------------------------

DOCKER = """#!/bin/sh
case "$1 $2" in
    "ps -aq") case "$*" in *label=*) echo 0123abcd ;; esac ;;
    "inspect --format") case "$3" in *Mounts*) printf '/var/lib/promtail\\t%s\\n' "$VOLUME" ;; esac ;;
    "stop "*) ;;
    *) exit 1 ;;
esac
"""


def read(tmp_path, folder):
    import os

    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "docker").write_text(DOCKER)
    (tools / "docker").chmod(0o755)
    environment = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "VOLUME": str(folder)}
    done = subprocess.run(["sh", "-c", program_command("shipper_cutover", str(tmp_path), "read", "observability",
                                                       "promtail", "/var/lib/promtail", INSPECT_FORMAT)],
                          env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return parse_read(done.stdout)


def test_the_read_half_reads_no_file_through_a_link_a_newline_in_a_name_points_at(tmp_path):
    """The shippers write their volume as root: a folder named "x<newline>positions.yaml<newline>y" made
    `read` see a line "positions.yaml", and base64 then read the symbolic link of that name (find had
    skipped it as no regular file): any root-only file of the host went to the controller, its text in
    the YAML error the cut-over prints."""
    folder, secret = tmp_path / "volume", tmp_path / "shadow"
    secret.write_text("root: $y$j9T$secret-hash\n")
    folder.mkdir()
    (folder / "positions.yaml").symlink_to(secret)
    (folder / "x\npositions.yaml\ny").mkdir()
    (folder / "x\npositions.yaml\ny/positions.yaml").write_text("positions: {}\n")
    (folder / "loki.source.file.nginx_access").mkdir()
    (folder / "loki.source.file.nginx_access/positions.yml").write_text(ALLOY_FILE := "positions: {}\n")
    found = read(tmp_path, folder)
    assert found.folder == str(folder)
    assert not any("secret" in text for text in found.files.values()), found.files
    assert found.files == {"loki.source.file.nginx_access/positions.yml": ALLOY_FILE}


def test_a_positions_file_in_a_folder_with_a_space_reads_whole(tmp_path):
    """Before: the record was split at the name's first space; the rest decoded as base64 (garbage, or a
    binascii.Error that no handler caught: the old shipper stayed stopped)."""
    from tests.test_deploy_plan import framed

    folder = tmp_path / "volume"
    (folder / "a b").mkdir(parents=True)
    (folder / "a b/positions.yml").write_text("positions: {}\n")
    assert read(tmp_path, folder).files == {"a b/positions.yml": "positions: {}\n"}
    with pytest.raises(PositionsError):
        parse_read(framed([("positions", "positions.yaml not*base64")]))
