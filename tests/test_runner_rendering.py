"""pyinfra_glue.runner.deploying with manifests rendered while the hosts connect: the deploy gets
exactly what the render returned, and a render that fails (configuration, secrets) reaches the
caller as its own error, with the hosts disconnected and no operation prepared."""

from __future__ import annotations

import pytest

from vsa_ops.pyinfra_glue.gevent_patch import patch

patch()

from pyinfra.api import Inventory  # noqa: E402

from vsa_ops.deploys.request import DeployRequest  # noqa: E402
from vsa_ops.errors import VsaError  # noqa: E402
from vsa_ops.pyinfra_glue.runner import deploying  # noqa: E402

DEPLOY = '''from pyinfra import host
from vsa_ops.deploys.request import REQUEST_KEY
with open({out!r}, "a") as out:
    out.write(f"{{host.name}}={{getattr(host.data, REQUEST_KEY).manifest}}\\n")
'''


def _project(tmp_path):
    (tmp_path / "deploy.py").write_text(DEPLOY.format(out=str(tmp_path / "seen")))
    return tmp_path, Inventory((["@fake/a", "@fake/b"], {}))


def test_the_deploy_gets_the_manifests_rendered_while_connecting(tmp_path):
    root, inventory = _project(tmp_path)
    with deploying(root, root / "inventory.py", None, DeployRequest(), lambda: {"@fake/a": "A", "@fake/b": "B"},
                   inventory=inventory) as run:
        assert run.result.returncode == 0, run.result.error
        assert all(host.connected for host in run.hosts)
    assert sorted((root / "seen").read_text().split()) == ["@fake/a=A", "@fake/b=B"]


def test_a_failed_render_is_raised_as_it_is_and_nothing_is_prepared(tmp_path):
    root, inventory = _project(tmp_path)

    def render():
        raise VsaError("group_data: reverse_proxy.nginx: bad value")

    with pytest.raises(VsaError, match="bad value") as raised:
        with deploying(root, root / "inventory.py", None, DeployRequest(), render, inventory=inventory):
            pytest.fail("the block must not run")
    assert type(raised.value) is VsaError
    assert not (root / "seen").exists()
    assert not any(host.connected for host in inventory)


def test_given_manifests_are_used_as_they_are(tmp_path):
    root, inventory = _project(tmp_path)
    with deploying(root, root / "inventory.py", ["@fake/a"], DeployRequest(), {"@fake/a": "given"},
                   inventory=inventory) as run:
        assert run.result.returncode == 0, run.result.error
    assert (root / "seen").read_text().split() == ["@fake/a=given"]
