"""The log shipper cut-over on a lab host, both ways. The lab's Promtail is a busybox stand-in that
writes no positions, and the lab has no Alloy image: a fake Promtail positions file on the real volume
names the host's real log files and containers, the cut-over (host program and conversion) runs on it,
and a stand-in container labelled as the stack's Alloy service takes the way back."""

from __future__ import annotations

import base64
import json

import pytest

from tests.lab.conftest import ROOT
from vsa_ops.config import hub_config
from vsa_ops.shipper_positions import label_set_string, layout, read_alloy, read_promtail

pytestmark = pytest.mark.lab
STATE = "/var/lib/promtail"
CURSOR = "s=0123456789abcdef0123456789abcdef;i=1f;b=fedcba9876543210fedcba9876543210;m=2a;t=5f0e1d2c3b4a;x=77"
FAKE_ALLOY = "vsa-lab-fake-alloy"


def cut_over(lab, old: str) -> bool:
    from pyinfra.context import ctx_host, ctx_state

    from vsa_ops.operations.shipper import _cut_over
    from vsa_ops.pyinfra_glue.connections import connected

    hub = hub_config()
    with connected(lab.inventory, ROOT) as sessions:
        host, _run = sessions[lab.name]
        with ctx_state.use(host.state), ctx_host.use(host):
            return _cut_over(host.state, host, "observability", old, STATE,
                             layout(hub.observability.log_shipper, hub.audit.jsonl))


def test_positions_cross_over_to_alloy_and_back_on_the_hosts_real_files(lab):
    lab.deploy()
    containers = lab.containers()
    volume = next(m["Source"] for m in containers["promtail"]["Mounts"] if m["Destination"] == STATE)
    audit_size = int(lab.sh("stat -c %s /var/log/vsa/audit.jsonl"))
    loki = containers["loki"]
    promtail = {"/var/log/vsa/audit.jsonl": str(audit_size),
                "/srv/flowbiz/reverse-proxy/logs/domains/gone.example.com.access.json": "5",
                "cursor-system-journal": CURSOR,
                f"cursor-{loki['Id']}": "1764500000",
                f"cursor-{'0' * 64}": "1764400000"}  # a container that no longer exists
    fake = "positions:\n" + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in promtail.items())
    lab.sh(f"echo {base64.b64encode(fake.encode()).decode()} | base64 -d > {volume}/positions.yaml")
    # an earlier stay on Alloy left its own, older positions: the cut-over must replace them
    lab.sh(f"mkdir -p {volume}/loki.source.file.vsa_audit && printf 'positions: {{}}\\n? x\\n' "
           f"> {volume}/loki.source.file.vsa_audit/positions.yml")

    assert cut_over(lab, "promtail")
    assert lab.containers()["promtail"]["State"]["Status"] == "exited"
    written = lab.sh(f"cd {volume} && find . -name positions.yml -printf '%P %m\\n'").split("\n")
    assert sorted(line.split()[1] for line in written if line) == ["600"] * 8

    def alloy(component):
        return read_alloy(lab.sh(f"cat {volume}/{component}/positions.yml"))
    assert alloy("loki.source.file.vsa_audit") == {("/var/log/vsa/audit.jsonl", "{}"): str(audit_size)}
    assert alloy("loki.source.journal.system_journal") == {("cursor-loki.source.journal.system_journal", ""): CURSOR}
    labels = loki["Config"]["Labels"]
    assert alloy("loki.source.docker.docker_containers") == {(f"cursor-{loki['Id']}", label_set_string({
        "__meta_docker_container_id": loki["Id"], "__meta_docker_container_name": loki["Name"],
        "__meta_docker_container_label_com_docker_compose_project": labels["com.docker.compose.project"],
        "__meta_docker_container_label_com_docker_compose_service": labels["com.docker.compose.service"],
        "job": "docker-containers"})): "1764500000"}

    # The way back: a stand-in labelled as the stack's Alloy service, on the same volume.
    lab.sh(f"printf 'positions: {{}}\\n' > {volume}/positions.yaml")
    image = containers["promtail"]["Config"]["Image"]
    lab.sh(f"docker run -d --name {FAKE_ALLOY} --label com.docker.compose.project=observability "
           f"--label com.docker.compose.service=alloy -v {volume}:{STATE} {image} -config.file=/etc/hostname")
    try:
        assert cut_over(lab, "alloy")
        assert lab.containers()[FAKE_ALLOY]["State"]["Status"] == "exited"
        back = read_promtail(lab.sh(f"cat {volume}/positions.yaml"))
        assert lab.sh(f"stat -c %a {volume}/positions.yaml").strip() == "600"
    finally:
        lab.sh(f"docker rm -f {FAKE_ALLOY}", check=False)
        lab.sh("docker start promtail", check=False)
    # what a job still reads comes back; the vanished container does not
    assert back == {key: value for key, value in promtail.items() if key != f"cursor-{'0' * 64}"}
