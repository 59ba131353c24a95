"""add-domain's probe on a lab VPS: a site whose upstream is not up is kept with a warning (proxy first,
app later), or rolled back with --require-upstream; and per-site rate limits: a site with
`--rate-limit off` takes a burst that the design's default zone limits."""

from __future__ import annotations

import time

import pytest

from vsa_ops.probe import UPSTREAM_MARK

from tests.lab.conftest import vsa
from tests.lab.test_domains import add, http, https, registry

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def hub(lab):
    lab.deploy()
    return lab


def test_a_site_whose_upstream_is_not_up_is_kept_with_a_warning(hub):
    """Before: `serving, status 429` and exit 0, the 429 from the probe's own retries."""
    result = add(hub, "later.vsa.test", "--upstream", "later-app:8080")
    assert (f"vsa-ops: warning: later.vsa.test on {hub.name}: upstream not answering: 502; the site is kept "
            f"(--require-upstream rolls it back)") in result.stderr, result.stderr
    assert "later.vsa.test: added, upstream not answering: 502, status 502, certificate by CN=Pebble" in result.stdout
    assert "serving" not in result.stdout
    assert "later.vsa.test" in registry(hub)
    answer = https(hub, "later.vsa.test")
    assert answer.status == 502 and answer.headers[UPSTREAM_MARK] == "unreachable"
    vsa("remove-domain", "later.vsa.test", "-i", str(hub.inventory))


def test_require_upstream_rolls_a_site_with_no_upstream_back(hub):
    before = registry(hub)
    result = add(hub, "strict.vsa.test", "--upstream", "strict-app:8080", "--no-tls", "--require-upstream",
                 check=False)
    assert result.returncode == 1
    assert ("add-domain strict.vsa.test failed at step 'probe': upstream not answering: 502 (--require-upstream); "
            "the registry and the hosts are as they were") in result.stderr, result.stderr
    assert registry(hub) == before
    assert "strict.vsa.test" not in hub.sh("ls /srv/flowbiz/reverse-proxy/nginx/conf.d/")


def test_a_site_with_rate_limit_off_takes_a_burst_that_a_default_site_limits(hub):
    open_site = add(hub, "webhooks.vsa.test", "--upstream", "demo-app:8080", "--rate-limit", "off")
    assert "webhooks.vsa.test: serving, status 200" in open_site.stdout, open_site.stdout + open_site.stderr
    assert "rate_limit: 'off'" in registry(hub)
    default_site = add(hub, "default.vsa.test", "--upstream", "demo-app:8080", "--no-tls")
    assert "default.vsa.test: serving, status 200" in default_site.stdout
    time.sleep(3)  # the probes' requests drain from the default zone
    assert [https(hub, "webhooks.vsa.test").status for _ in range(100)] == [200] * 100
    limited = [http(hub, "default.vsa.test").status for _ in range(100)]
    assert 429 in limited and set(limited) == {200, 429}
    for name in ("webhooks.vsa.test", "default.vsa.test"):
        vsa("remove-domain", name, "-i", str(hub.inventory))
    time.sleep(3)
