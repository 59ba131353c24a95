"""add-domain's probe on a lab VPS: a site whose upstream is not up is kept with a warning (proxy first,
app later), or rolled back with --require-upstream; and per-site rate limits: a site with
`--rate-limit off` takes a burst that the design's default zone limits."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from vsa_ops.probe import UPSTREAM_MARK

from tests.lab.conftest import ROOT, vsa
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


def test_ctrl_c_while_add_domain_probes_puts_the_registry_and_the_host_back(hub):
    """Ctrl-C once the host serves the new vhost (the probe waits for an upstream that never comes):
    the change is undone like a failed one, and nothing of the interrupted run is left."""
    before, conf_d = registry(hub), "/srv/flowbiz/reverse-proxy/nginx/conf.d"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VSA_")}
    process = subprocess.Popen(["vsa-ops", "add-domain", "halt.vsa.test", "--upstream", "halt-app:8080", "--no-tls",
                                "-i", str(hub.inventory)], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while "halt.vsa.test" not in hub.sh(f"ls {conf_d}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "halt.vsa.test" in hub.sh(f"ls {conf_d}")
        time.sleep(1)  # probing
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == ("vsa-ops: add-domain halt.vsa.test was interrupted; the registry and "
                                              "the hosts are as they were"), stderr
    assert registry(hub) == before
    assert "halt.vsa.test" not in hub.sh(f"ls {conf_d}")
    assert not {"lock", "journal"} & set(hub.sh("ls -A /var/lib/vsa-ops").split())
    assert vsa("deploy", "-i", str(hub.inventory)).stdout.strip().endswith("no changes")


def test_ctrl_c_while_remove_domain_holds_the_run_lock_puts_the_domain_back(hub):
    """remove-domain of a site with a certificate takes the run lock for several steps (the certificate's
    deletion follows the files); Ctrl-C there leaves the lock with the interrupted run, whose process is
    the rollback's own. Before: the rollback waited a minute for that lock and failed at 'take the run
    lock'."""
    from tests.test_host_programs import HOLD_HOOK

    state, conf_d = "/var/lib/vsa-ops", "/srv/flowbiz/reverse-proxy/nginx/conf.d"
    add(hub, "held.vsa.test", "--upstream", "demo-app:8080")
    before = registry(hub)
    subprocess.run(["docker", "exec", "-i", hub.name, "sh", "-c",
                    f"cat > {state}/step-hook && chmod 0700 {state}/step-hook && echo reload > {state}/hold-at"],
                   input=HOLD_HOOK, text=True, check=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VSA_")}
    process = subprocess.Popen(["vsa-ops", "remove-domain", "held.vsa.test", "-i", str(hub.inventory)], cwd=ROOT,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        held = f"grep -qx 'step reload' {state}/journal 2>/dev/null && test -d {state}/lock && echo yes || true"
        deadline = time.monotonic() + 60
        while hub.sh(held).strip() != "yes" and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        assert hub.sh(held).strip() == "yes"
        process.send_signal(signal.SIGINT)
        hub.sh(f"rm -f {state}/hold-at {state}/step-hook")
        started = time.monotonic()
        _, stderr = process.communicate(timeout=180)
    finally:
        process.kill()
        hub.sh(f"rm -f {state}/hold-at {state}/step-hook")
    assert process.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1] == ("vsa-ops: remove-domain held.vsa.test was interrupted; the registry "
                                              "and the hosts are as they were"), stderr
    assert time.monotonic() - started < 45, stderr  # no wait on the interrupted run's lock
    assert registry(hub) == before
    assert "held.vsa.test.conf" in hub.sh(f"ls {conf_d}").split()
    assert https(hub, "held.vsa.test").status == 200
    assert not {"lock", "journal"} & set(hub.sh(f"ls -A {state}").split())
    vsa("remove-domain", "held.vsa.test", "-i", str(hub.inventory))


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
