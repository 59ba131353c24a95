"""The edge on a lab host, through the deployed NGINX, in front of the lab's echo upstream (it answers with
the method, URI and headers it received): prefixed upstreams, security headers on every answer, basic
auth that keeps the password from the upstream and is refused without TLS, default servers that serve no
site, containers with least privilege, and no request dropped while sites come and go."""

from __future__ import annotations

from http.client import HTTPSConnection
import json
import os
import socket
import ssl
import time

import pytest

from vsa_ops.domains import load_registry, save_registry
from vsa_ops.probe import EVERY_ANSWER, HSTS, request

from tests.lab.conftest import ROOT, vsa
from tests.lab.load import Load
from tests.lab.test_domains import add

pytestmark = pytest.mark.lab

REGISTRY = ROOT / ".lab" / "domains.yml"
PASSWORD = "open sesame"
# The steady site of the zero-drop test takes more than a visitor's 10 requests/s.
ZONES = {"rate_limit_zones": {
    "perip": {}, "auth": {"rate": "5r/s", "burst": 10},
    "login": {"key": "$vsa_credentials_addr", "rate": "10r/s", "burst": 40, "nodelay": False},
    "load": {"rate": "2000r/s", "burst": 2000},
}}
# Sites added and removed one by one under load (the bench does 20 at a higher rate).
CHURN = int(os.environ.get("VSA_EDGE_CHURN", "4"))
RATE = 50


@pytest.fixture(scope="module")
def edge(lab, tmp_path_factory):
    lab.inventory_edge = lab.inventory_with(tmp_path_factory.mktemp("edge"), {"reverse_proxy": {"nginx": ZONES}})
    before = REGISTRY.read_text() if REGISTRY.exists() else None
    lab.deploy(inventory=lab.inventory_edge)
    kept = set(load_registry(REGISTRY))
    yield lab
    # Back as the other lab tests expect it: none of these sites (nor their certificates), the lab's own zones.
    for name in sorted(set(load_registry(REGISTRY)) - kept):
        vsa("remove-domain", name, "-i", str(lab.inventory_edge), check=False)
    if before is None:
        REGISTRY.unlink(missing_ok=True)
    else:
        REGISTRY.write_text(before)
    lab.deploy(check=False)


def edge_add(hub, name, *args, password=None, check=True):
    result = add(hub, name, "-i", str(hub.inventory_edge), *args, password=password, check=False)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def https(hub, name, path="/", **kwargs):
    return request("127.0.0.1", hub.host["https_port"], name, tls=True, ca_file=hub.info["acme_roots"], path=path,
                   **kwargs)[0]


def http(hub, name, path="/"):
    return request("127.0.0.1", hub.host["http_port"], name, tls=False, path=path)[0]


def answered(ask, seconds: float = 10.0):
    """``ask()``'s answer once NGINX answers it: a reload after a plain deploy takes effect asynchronously,
    and until then the default server closes the connection."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ask()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def seen(answer) -> dict:
    assert answer.status == 200, (answer.status, answer.body[:300])
    return json.loads(answer.body)


def test_a_prefixed_upstream_gets_the_whole_uri_behind_its_prefix(edge):
    edge_add(edge, "prefixed.vsa.test", "--upstream", "http://echo:8080/base/")  # the probe asks a deep path too
    assert seen(https(edge, "prefixed.vsa.test", "/orders/42?page=2"))["uri"] == "/base/orders/42?page=2"
    edge_add(edge, "slashless.vsa.test", "--upstream", "echo:8080/base", "--no-tls")
    assert seen(http(edge, "slashless.vsa.test", "/orders/42?page=2"))["uri"] == "/base/orders/42?page=2"


def test_redirects_keep_path_and_query_and_carry_the_headers_without_hsts(edge):
    answer = http(edge, "prefixed.vsa.test", "/orders/42?page=2")
    assert answer.status == 301 and answer.headers["location"] == "https://prefixed.vsa.test/orders/42?page=2"
    assert all(h in answer.headers for h in EVERY_ANSWER) and HSTS not in answer.headers


def test_an_http_only_site_carries_the_security_headers_and_no_hsts(edge):
    edge_add(edge, "plain-edge.vsa.test", "--upstream", "echo:8080", "--no-tls")
    edge_add(edge, "dead-edge.vsa.test", "--upstream", "ghost-app:8080", "--no-tls", "--no-apply")
    edge.deploy(inventory=edge.inventory_edge)
    for name, status in (("plain-edge.vsa.test", 200), ("dead-edge.vsa.test", 502)):
        answer = answered(lambda: http(edge, name))
        assert answer.status == status
        assert all(h in answer.headers for h in EVERY_ANSWER), answer.headers
        assert HSTS not in answer.headers


def test_the_upstream_of_a_basic_auth_site_receives_no_authorization(edge):
    edge_add(edge, "private-edge.vsa.test", "--upstream", "echo:8080", "--auth-user", "alice",
             password=PASSWORD + "\n")
    headers = seen(https(edge, "private-edge.vsa.test", user="alice", password=PASSWORD))["headers"]
    assert "authorization" not in {k.lower() for k in headers}
    denied = https(edge, "private-edge.vsa.test")
    assert denied.status == 401 and all(h in denied.headers for h in (HSTS, *EVERY_ANSWER))


def test_basic_auth_without_tls_is_refused_and_changes_nothing(edge):
    registry = REGISTRY.read_text()
    vhosts = edge.sh("ls /srv/flowbiz/reverse-proxy/nginx/conf.d/ /srv/flowbiz/reverse-proxy/nginx/auth/")
    result = edge_add(edge, "clear.vsa.test", "--upstream", "echo:8080", "--no-tls", "--auth-user", "alice",
                      password=PASSWORD + "\n", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "vsa-ops: --auth-user with --no-tls would send passwords in clear text: drop --no-tls, or add "
        "--insecure-auth to do it anyway"]
    assert REGISTRY.read_text() == registry
    assert edge.sh("ls /srv/flowbiz/reverse-proxy/nginx/conf.d/ /srv/flowbiz/reverse-proxy/nginx/auth/") == vhosts


def test_a_name_no_site_serves_gets_no_site(edge):
    with pytest.raises(OSError):  # HTTP: the default server closes the connection (444)
        http(edge, "unknown.vsa.test")
    with pytest.raises(OSError):  # nor does the ACME webroot answer for it
        http(edge, "unknown.vsa.test", "/.well-known/acme-challenge/x")
    with pytest.raises(ssl.SSLError):  # HTTPS, unknown SNI: no handshake, no site's certificate
        https(edge, "unknown.vsa.test")
    port = edge.host["https_port"]
    context = ssl.create_default_context(cafile=edge.info["acme_roots"])
    connection = HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                          server_hostname="prefixed.vsa.test")
    connection.request("GET", "/", headers={"Host": "unknown.vsa.test"})
    answer = connection.getresponse()
    assert answer.status == 421 and b'"uri"' not in answer.read()  # misdirected, not proxied
    connection.close()


def test_every_service_runs_with_least_privilege(edge):
    containers = edge.containers()
    design = {"reverse-proxy-nginx", "reverse-proxy-certbot", "reverse-proxy-reloader", "prometheus", "loki",
              "grafana", "node-exporter", "promtail", "dashboard-postgres", "dashboard-api", "dashboard-ui"}
    for name in design & set(containers):
        config = containers[name]["HostConfig"]
        assert config["CapDrop"] == ["ALL"], name
        assert "no-new-privileges:true" in config["SecurityOpt"], name
        assert containers[name]["State"]["Status"] == "running" and not containers[name]["State"]["Restarting"], name
    # cAdvisor, privileged as designed (the lab turns that off: no privileged containers inside it), names why
    assert containers["cadvisor"]["Config"]["Labels"]["vsa.root-access-reason"].startswith("design: cAdvisor")
    assert "flowbiz_ext" not in containers["loki"]["NetworkSettings"]["Networks"]
    shipper = {m["Destination"] for m in containers["promtail"]["Mounts"]}
    assert "/srv/flowbiz" not in shipper and "/srv/flowbiz/reverse-proxy/logs" in shipper
    # NGINX with only its capabilities still binds 443, writes its logs and switches its workers to nginx
    assert https(edge, "prefixed.vsa.test").status == 200
    assert edge.sh("ls /srv/flowbiz/reverse-proxy/logs/domains/").count("prefixed.vsa.test.access.json") == 1


def test_no_request_is_dropped_while_sites_come_and_go(edge):
    """A steady HTTPS stream to one site while other sites are added and removed one by one, a certificate
    is renewed and NGINX reloaded, and a full no-op deploy runs: every answer is 2xx."""
    edge_add(edge, "steady.vsa.test", "--upstream", "echo:8080")
    domains = load_registry(REGISTRY)
    domains["steady.vsa.test"] = domains["steady.vsa.test"].model_copy(update={"rate_limit": "load"})
    save_registry(REGISTRY, domains)
    edge.deploy(inventory=edge.inventory_edge)
    answered(lambda: https(edge, "steady.vsa.test"))
    time.sleep(3)  # the reload that brings the site's own zone takes effect asynchronously
    with Load(edge.host["https_port"], "steady.vsa.test", edge.info["acme_roots"], rate=RATE, workers=4,
              max_seconds=900) as load:
        time.sleep(2)
        for index in range(CHURN):
            edge_add(edge, f"churn{index}.vsa.test", "--upstream", "demo-app:8080", "--no-tls")
        for index in range(CHURN):
            vsa("remove-domain", f"churn{index}.vsa.test", "-i", str(edge.inventory_edge))
        edge.sh("docker exec reverse-proxy-certbot certbot renew --force-renewal --cert-name steady.vsa.test "
                "--no-random-sleep-on-renew >/dev/null 2>&1")
        # what the reloader runs after a renewal (without waiting for its next minute)
        edge.sh("docker exec reverse-proxy-nginx sh -c 'nginx -t -q && nginx -s reload'")
        assert "no changes" in edge.deploy(inventory=edge.inventory_edge).stdout
        time.sleep(2)
    result = load.result
    print(f"zero-drop: {result}")
    assert result.failed == 0, str(result)
    assert result.sent >= RATE * 10 and result.rate >= RATE * 0.8, str(result)
