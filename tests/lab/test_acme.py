"""End to end with the lab's ACME test CA (vsa_ops.lab.acme): certbot in a deployed lab host's
``reverse-proxy-certbot`` container gets a certificate from pebble through real HTTP-01 validation,
which pebble runs against the deployed NGINX; a name nobody serves fails quickly and clearly.

Needs dockerd: fails naming it when it is missing (left out with --without-docker). Uses the session's
lab host (tests/lab/conftest.py)."""

from __future__ import annotations

import subprocess
import time

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from vsa_ops.lab import acme

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab

HOST = "vsa-lab-1"
LETSENCRYPT = "/srv/flowbiz/reverse-proxy/letsencrypt"  # /etc/letsencrypt in the certbot container
BUNDLE = "vsa-lab-ca.pem"
NAME = "test1.vsa.test"


def _in_host(*argv: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", "exec", "-i", HOST, *argv], input=input, capture_output=True, timeout=300)
    if check and result.returncode:
        raise AssertionError(f"{argv} exited {result.returncode}: {result.stderr.decode(errors='replace')}")
    return result


def certbot(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    """certbot in the deployed certbot container, trusting pebble's listener through the bundle."""
    start = time.monotonic()
    result = _in_host("docker", "exec", "-e", f"REQUESTS_CA_BUNDLE=/etc/letsencrypt/{BUNDLE}",
                      "reverse-proxy-certbot", "certbot", *args, check=False)
    return result, time.monotonic() - start


def certonly(name: str) -> tuple[subprocess.CompletedProcess, float]:
    return certbot("certonly", "--webroot", "-w", "/var/www/certbot", "-d", name, "--server", acme.directory_url(),
                   "--agree-tos", "-m", "admin@vsa.test", "--non-interactive", "--no-random-sleep-on-renew")


@pytest.fixture(scope="module")
def deployed_host(lab) -> dict:
    """vsa-lab-1 up and deployed, the CA bundle copied in, and no ACME state from an earlier pebble."""
    lab.deploy()
    # NGINX answers ACME challenges only for names vsa-ops serves: declare the name (HTTP only, so
    # vsa-ops itself orders nothing); certbot below asks for its certificate by hand.
    vsa("add-domain", NAME, "--upstream", "demo-app:8080", "--no-tls", "-i", str(lab.inventory))
    info = lab.info
    with open(info["ca_bundle"], "rb") as bundle:
        _in_host("sh", "-c", f"cat > {LETSENCRYPT}/{BUNDLE}", input=bundle.read())
    # pebble keeps nothing across restarts: an account or lineage from an earlier pebble is stale
    _in_host("rm", "-rf", f"{LETSENCRYPT}/accounts", f"{LETSENCRYPT}/live/{NAME}", f"{LETSENCRYPT}/archive/{NAME}",
             f"{LETSENCRYPT}/renewal/{NAME}.conf")
    yield info
    vsa("remove-domain", NAME, "-i", str(lab.inventory), check=False)


def test_lab_info_names_the_test_ca(deployed_host):
    assert deployed_host["acme_directory"] == acme.directory_url()
    pems = x509.load_pem_x509_certificates(open(deployed_host["ca_bundle"], "rb").read())
    roots = x509.load_pem_x509_certificates(acme.issuer_roots(ROOT).read_bytes())
    assert roots[0] in pems and len(pems) == 2  # the issuing root and the listener's CA


def test_certbot_gets_a_certificate_through_http01_against_nginx(deployed_host):
    result, seconds = certonly(NAME)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    print(f"\nissuance of {NAME}: {seconds:.1f} s")
    assert seconds < 60

    renewal = _in_host("cat", f"{LETSENCRYPT}/renewal/{NAME}.conf").stdout.decode()
    assert "authenticator = webroot" in renewal and f"server = {acme.directory_url()}" in renewal
    chain = x509.load_pem_x509_certificates(_in_host("cat", f"{LETSENCRYPT}/live/{NAME}/fullchain.pem").stdout)
    roots = x509.load_pem_x509_certificates(acme.issuer_roots(ROOT).read_bytes())
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(x509.DNSName(NAME))
    assert verifier.verify(chain[0], chain[1:])[-1] == roots[0]  # chains to pebble's current root
    # pebble's validator really fetched the token from the deployed NGINX
    log = _in_host("docker", "logs", "reverse-proxy-nginx").stdout.decode(errors="replace")
    log += _in_host("sh", "-c", "cat /srv/flowbiz/reverse-proxy/logs/access.log "
                    f"/srv/flowbiz/reverse-proxy/logs/domains/{NAME}.access.json 2>/dev/null || true").stdout.decode()
    assert "LetsEncrypt-Pebble-VA" in log


@pytest.mark.parametrize("address, reason", [(acme.ACME_IP, "connection refused"), ("10.203.7.99", "")],
                         ids=["refused", "no-host"])
def test_a_name_nobody_serves_fails_fast_and_clearly(deployed_host, address, reason):
    name = f"unserved-{address.rsplit('.', 1)[1]}.vsa.test"
    acme.point(name, address)  # nothing listens on port 80 there
    result, seconds = certonly(name)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode != 0, output
    assert seconds < 30, f"failure took {seconds:.1f} s"
    assert "Some challenges have failed" in output and f"Domain: {name}" in output, output
    assert reason in output
    assert _in_host("test", "-e", f"{LETSENCRYPT}/renewal/{name}.conf", check=False).returncode != 0
