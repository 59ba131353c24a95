"""`vsa-ops deploy --defer-certificates` (issue 13), at plan level on pyinfra's @fake connector: a TLS
site whose certificate the host lacks keeps its HTTP vhost and nothing is ordered from the CA; the
run says so. Then what a restore refuses to overwrite."""

from __future__ import annotations

import pytest

from vsa_ops.pyinfra_glue.gevent_patch import patch

patch()


from vsa_ops.backup.service import what_it_overwrites  # noqa: E402
from vsa_ops.config import hub_config  # noqa: E402
from vsa_ops.deploys.request import OUTCOME_KEY, REQUEST_KEY, DeployRequest  # noqa: E402
from vsa_ops.domains import Domain, save_registry  # noqa: E402
from vsa_ops.planning import SALT  # noqa: E402
from vsa_ops.project import load_sources  # noqa: E402
from vsa_ops.render import render_host  # noqa: E402

from tests.conftest import ROOT, SECRETS  # noqa: E402
from tests.fake_deploy import fake_deploy  # noqa: E402
from tests.test_deploy_plan import STATE_READ, state_output  # noqa: E402
from tests.test_plan import converged  # noqa: E402

SITE = Domain(name="shop.example.com", upstream="demo-app:8080", tls=True)


@pytest.fixture
def deploy_site(tmp_path, monkeypatch):
    """Deploy a host that serves SITE over HTTP and holds no certificate; (commands sent, summary)."""
    monkeypatch.setenv("VSA_PROJECT", str(ROOT))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    registry = tmp_path / "domains.yml"
    save_registry(registry, {SITE.name: SITE})
    # the host as a deploy leaves it before issuance: the site's HTTP-only vhost, no certificate
    served = render_host(hub_config(), load_sources(ROOT), host="@fake/hub", secrets=SECRETS, domains=[SITE],
                         certificates=set())

    def deploy(request: DeployRequest) -> tuple[str, str]:
        data = {"fake_responses": {STATE_READ: state_output(converged(served, salt=SALT))},
                "vsa_domains_file": str(registry), REQUEST_KEY: request}
        _, host, sent = fake_deploy(monkeypatch, data)
        return "\n".join(command for command, _ in sent), host.data.get(OUTCOME_KEY).summary

    return deploy


def test_a_deploy_that_defers_certificates_orders_none_and_says_so(deploy_site):
    sent, summary = deploy_site(DeployRequest(defer_certificates=True))
    assert "certbot" not in sent and STATE_READ in sent
    assert summary == "certificates deferred for shop.example.com (served over HTTP until issued or restored)"
    sent, summary = deploy_site(DeployRequest())
    assert "certbot certonly" in sent and summary == "certificates for shop.example.com"


def test_a_restore_refuses_a_host_holding_certificates_rows_or_grafana_data():
    overwrite, refusal = what_it_overwrites({"postgres_rows": 0, "certificates": 2, "grafana_files": 0,
                                             "audit_records": 4})
    assert overwrite == "0 dashboard database rows, 2 certificates, 0 Grafana files and 4 audit records"
    assert refusal.startswith("the host already holds data; a restore would overwrite its 0 dashboard")
    assert what_it_overwrites({"postgres_rows": 0, "certificates": 0, "grafana_files": 0,
                               "audit_records": 1})[1] is None
    assert what_it_overwrites({"postgres_rows": 3})[1] and what_it_overwrites({"grafana_files": 1})[1]
