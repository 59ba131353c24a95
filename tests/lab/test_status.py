"""`vsa-ops status` on a lab host: 0 after a deploy; 1 naming the container after `docker stop` of
one service; 0 again after `vsa-ops deploy` brings it back."""

from __future__ import annotations

import json

import pytest

from tests.lab.conftest import vsa

pytestmark = pytest.mark.lab
STOPPED = "prometheus"


def test_status_names_a_stopped_container_until_deploy_restarts_it(lab):
    inventory = str(lab.inventory)
    lab.deploy()
    healthy = vsa("status", "-i", inventory, check=False)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert healthy.stdout.startswith(f"{lab.name}: ok\n") and healthy.stderr == ""
    stacks = {name for name, c in lab.containers().items() if "com.docker.compose.project" in c["Config"]["Labels"]}
    report = json.loads(vsa("status", "-i", inventory, "--json").stdout)
    host = report["hosts"][0]
    assert report["ok"] is True and {c["name"] for c in host["containers"]} == stacks
    assert {c["name"] for c in host["checks"]} >= {f"container {name}" for name in stacks} | {"drift", "last deploy"}
    assert host["last_deploy"]["result"] == "ok"
    for name in stacks:
        assert f"    {name} " in healthy.stdout

    lab.sh(f"docker stop {STOPPED}")
    down = vsa("status", "-i", inventory, check=False)
    assert down.returncode == 1, down.stdout
    assert f"vsa-ops: {lab.name}: container {STOPPED}: is exited" in down.stderr, down.stderr
    assert f"{lab.name}: ok" not in down.stdout

    lab.deploy()
    again = vsa("status", "-i", inventory, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
