"""End to end on a lab VPS with the pebble ACME CA: `vsa-ops add-domain` gives a working HTTPS site
through real HTTP-01 validation, basic auth, rate limits and headers hold, a broken change is rolled
back, and `remove-domain` stops serving one name while the others go on."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time

import pytest

from vsa_ops.probe import REQUIRED_HEADERS, request

from tests.lab.conftest import ROOT, vsa

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def hub(lab):
    lab.deploy()
    return lab


def https(hub, name, **kwargs):
    host = hub.host
    answer, cert = request("127.0.0.1", host["https_port"], name, tls=True, ca_file=hub.info["acme_roots"], **kwargs)
    return answer


def http(hub, name):
    answer, _ = request("127.0.0.1", hub.host["http_port"], name, tls=False)
    return answer


def add(hub, name, *args, password=None, check=True, env=None):
    import os
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VSA_")} | (env or {})
    result = subprocess.run(["vsa-ops", "add-domain", name, "-i", str(hub.inventory), *args], cwd=ROOT,
                            input=password, capture_output=True, text=True, env=environment)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _soon(check, seconds=10.0) -> bool:
    """``check()`` holds within ``seconds`` (errors count as not yet)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def registry(hub):
    path = ROOT / ".lab" / "domains.yml"
    return path.read_text() if path.exists() else ""


def test_add_domain_serves_https_with_every_header(hub):
    result = add(hub, "shop.vsa.test", "--upstream", "demo-app:8080", "--alias", "www.shop.vsa.test")
    assert "shop.vsa.test: serving, status 200, certificate by CN=Pebble Intermediate CA" in result.stdout
    answer = https(hub, "shop.vsa.test")
    assert answer.status == 200 and b"demo-app" in answer.body
    for header in REQUIRED_HEADERS:
        assert header in answer.headers, header
    assert answer.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert answer.headers["x-frame-options"] == "DENY"
    assert https(hub, "www.shop.vsa.test").status == 200
    renewal = hub.sh("cat /srv/flowbiz/reverse-proxy/letsencrypt/renewal/shop.vsa.test.conf")
    assert "authenticator = webroot" in renewal


def serial(hub, name):
    import socket
    context = ssl.create_default_context(cafile=hub.info["acme_roots"])
    with socket.create_connection(("127.0.0.1", hub.host["https_port"]), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            from cryptography import x509
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_a_real_renewal_reaches_nginx_through_the_deploy_hook(hub):
    before = serial(hub, "shop.vsa.test")
    renewed = hub.sh("docker exec reverse-proxy-certbot certbot renew --force-renewal --cert-name shop.vsa.test "
                     "--no-random-sleep-on-renew 2>&1")
    assert "Congratulations, all renewals succeeded" in renewed, renewed  # "renewed" alone is in failures too
    flag = "/srv/flowbiz/reverse-proxy/reload-flag/nginx"  # /run/vsa-reload/nginx in certbot and the reloader
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and serial(hub, "shop.vsa.test") == before:
        time.sleep(1)
    assert serial(hub, "shop.vsa.test") != before  # the reloader acted on the hook's flag
    assert hub.sh(f"test -e {flag} && echo left || echo gone").strip() == "gone"


def test_http_redirects_to_https(hub):
    answer = http(hub, "shop.vsa.test")
    assert answer.status == 301
    assert answer.headers["location"] == "https://shop.vsa.test/"


def test_the_access_log_is_per_domain_json(hub):
    https(hub, "shop.vsa.test", path='/quote"test')
    time.sleep(0.5)
    lines = hub.sh("tail -n 5 /srv/flowbiz/reverse-proxy/logs/domains/shop.vsa.test.access.json").splitlines()
    record = json.loads(lines[-1])
    assert record["domain"] == "shop.vsa.test" and record["method"] == "GET" and record["status"] == "200"
    assert "request_time" in record and "upstream_addr" in record


def test_basic_auth_asks_for_the_right_password(hub):
    add(hub, "private.vsa.test", "--upstream", "demo-app:8080", "--auth-user", "alice", password="open sesame\n")
    denied = https(hub, "private.vsa.test")
    assert denied.status == 401 and "strict-transport-security" in denied.headers  # `always`: errors too
    assert https(hub, "private.vsa.test", user="alice", password="wrong").status == 401
    assert https(hub, "private.vsa.test", user="alice", password="open sesame").status == 200
    assert "open sesame" not in registry(hub)
    mode = hub.sh("stat -c '%a %g' /srv/flowbiz/reverse-proxy/nginx/auth/private.vsa.test.htpasswd").split()
    assert mode == ["640", "101"]


def test_rate_limited_requests_get_429(hub):
    answers = [https(hub, "shop.vsa.test") for _ in range(60)]
    limited = [a for a in answers if a.status == 429]
    assert limited and not [a for a in answers if a.status == 503]
    assert "x-content-type-options" in limited[0].headers
    time.sleep(3)


def test_a_duplicate_changes_nothing(hub):
    before = registry(hub)
    result = add(hub, "shop.vsa.test", "--upstream", "demo-app:8080", check=False)
    assert result.returncode == 1 and "already declared" in result.stderr
    assert registry(hub) == before


def test_a_change_that_fails_nginx_t_is_rolled_back_and_others_keep_serving(hub, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("stacks", "templates", "group_data"):
        shutil.copytree(ROOT / name, project / name)
    shutil.copy(ROOT / "deploy.py", project / "deploy.py")
    template = project / "templates" / "vhost.conf.j2"
    template.write_text(template.read_text().replace("    server_name {{", "    no_such_directive on;\n    server_name {{", 1))
    before = registry(hub)
    conf_before = hub.sh("ls /srv/flowbiz/reverse-proxy/nginx/conf.d/")
    result = add(hub, "broken.vsa.test", "--upstream", "demo-app:8080", check=False, env={"VSA_PROJECT": str(project)})
    assert result.returncode == 1
    assert "add-domain broken.vsa.test failed at step 'files and stacks:" in result.stderr
    assert "the registry and the hosts are as they were" in result.stderr
    assert "no_such_directive" in result.stderr  # nginx -t said why
    assert registry(hub) == before
    assert hub.sh("ls /srv/flowbiz/reverse-proxy/nginx/conf.d/") == conf_before
    assert https(hub, "shop.vsa.test").status == 200


def test_an_upstream_that_does_not_resolve_breaks_only_its_own_vhost(hub):
    add(hub, "ghost.vsa.test", "--upstream", "ghost-app:8080", "--no-tls", "--no-apply")
    vsa("deploy", "-i", str(hub.inventory))
    hub.sh("docker restart reverse-proxy-nginx >/dev/null")
    time.sleep(1)
    assert hub.containers()["reverse-proxy-nginx"]["State"]["Status"] == "running"
    assert http(hub, "ghost.vsa.test").status == 502
    assert https(hub, "shop.vsa.test").status == 200
    vsa("remove-domain", "ghost.vsa.test", "-i", str(hub.inventory))


def test_remove_domain_stops_serving_it_and_keeps_the_others(hub):
    vsa("remove-domain", "private.vsa.test", "-i", str(hub.inventory))
    with pytest.raises((ssl.SSLError, OSError)):
        https(hub, "private.vsa.test")
    assert https(hub, "shop.vsa.test").status == 200
    files = hub.sh("ls /srv/flowbiz/reverse-proxy/nginx/conf.d/ /srv/flowbiz/reverse-proxy/nginx/auth/")
    assert "private.vsa.test" not in files
    assert "private.vsa.test" not in hub.sh("ls /srv/flowbiz/reverse-proxy/letsencrypt/renewal/")
    assert hub.sh("ls /srv/flowbiz/reverse-proxy/logs/domains/").count("private.vsa.test.access.json") == 1
    assert "private.vsa.test" not in registry(hub)


def test_domains_and_certs_list_live_state(hub):
    rows = json.loads(vsa("domains", "-i", str(hub.inventory), "--json").stdout)
    shop = [r for r in rows if r["domain"] == "shop.vsa.test"][0]
    assert shop["vhost"] is True and shop["issuer"].startswith("CN=Pebble Intermediate CA")
    assert shop["days_left"] > 300 and shop["auth"] is False
    certs = json.loads(vsa("certs", "-i", str(hub.inventory), "--json").stdout)
    # every certificate on the host (an earlier test may have left its own), the soonest to expire first
    assert [c for c in certs if c["name"] == "shop.vsa.test" and c["host"] == hub.name and c["days_left"] > 300]
    assert [c["days_left"] for c in certs] == sorted(c["days_left"] for c in certs)


def test_listings_name_a_host_they_cannot_reach(hub, tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text(hub.inventory.read_text() +
                         "\nlab.append(('ghost', {**lab[0][1], 'ssh_port': 1}))\nhubs = [name for name, _ in lab]\n")
    for command in ("domains", "certs"):
        result = vsa(command, "-i", str(inventory), check=False)
        assert result.returncode == 1 and "vsa-ops: ghost: could not connect" in result.stderr, result.stderr
        assert "shop.vsa.test" in result.stdout  # the reachable host is still listed


def test_a_second_deploy_after_domains_changes_nothing(hub):
    assert "no changes" in vsa("deploy", "-i", str(hub.inventory)).stdout


def test_three_hundred_domains_at_once_converge_and_go_again(hub):
    """A transaction too long for one command line (300 vhosts, the lock's fingerprint over every
    path) travels as a file and applies; removing them all is one more converge."""
    from vsa_ops.domains import Domain, load_registry, save_registry

    path = ROOT / ".lab" / "domains.yml"
    before = load_registry(path)
    many = {f"bulk{i}.vsa.test": Domain(name=f"bulk{i}.vsa.test", upstream="demo-app:8080", tls=False)
            for i in range(300)}
    save_registry(path, {**before, **many})
    try:
        result = hub.deploy()
        assert "300 files; reload reverse-proxy-nginx" in result.stdout, result.stdout
        assert _soon(lambda: http(hub, "bulk299.vsa.test").status == 200)  # NGINX reloads asynchronously
    finally:
        save_registry(path, before)
    assert "300 removed files" in hub.deploy().stdout

    def refused() -> bool:  # the default server closes the connection of a name it does not serve
        try:
            http(hub, "bulk299.vsa.test")
        except OSError:
            return True
        return False

    assert _soon(refused)
    assert "no changes" in hub.deploy().stdout
