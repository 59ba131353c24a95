"""What a visitor meets, through the rendered NGINX tree in the real NGINX image (the lab's build) with the
capabilities the configuration gives it, in front of the lab's echo upstream (which answers with what it
received): prefixed upstreams, security headers on every answer, basic auth that keeps the password from
the upstream, default servers that serve no site. tests/lab/test_edge.py checks the same on a lab host."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import uuid

import pytest

from vsa_ops.config import hub_config
from vsa_ops.domains import Domain
from vsa_ops.htpasswd import hash_password
from vsa_ops.lab.images import ensure_images
from vsa_ops.probe import EVERY_ANSWER, HSTS, request
from vsa_ops.writer import write_manifest

from tests.test_nginx import self_signed

PASSWORD = "open sesame"
DOMAINS = [
    Domain(name="prefixed.example.com", upstream="http://echo:8080/base/", tls=False),
    Domain(name="slashless.example.com", upstream="echo:8080/base", tls=False),
    Domain(name="plain.example.com", upstream="echo:8080", tls=False),
    Domain(name="dead.example.com", upstream="ghost-app:8080", tls=False),
    Domain(name="secure.example.com", upstream="echo:8080"),
    Domain(name="private.example.com", upstream="echo:8080", auth={"alice": hash_password(PASSWORD)}),
    Domain(name="passing.example.com", upstream="echo:8080", auth={"alice": hash_password(PASSWORD)},
           pass_auth=True),
    Domain(name="steady.example.com", upstream="echo:8080", rate_limit="load"),
    Domain(name="open.example.com", upstream="echo:8080", tls=False, rate_limit="off"),
    Domain(name="own.example.com", upstream="echo:8080", tls=False, rate_limit="5r/s/3"),
    Domain(name="slow.example.com", upstream="echo:8080", rate_limit="120r/m/0"),
    Domain(name="spoof.example.com", upstream="liar:8080", tls=False, rate_limit="off"),
    Domain(name="busy.example.com", upstream="liar:8080", tls=False, rate_limit="off"),
    Domain(name="misdirect.example.com", upstream="liar:8080", tls=False, rate_limit="off"),
    Domain(name="sleepy.example.com", upstream="liar:8080", rate_limit="off"),
]
# An app that answers errors itself, by the Host NGINX forwards: 502 or 421 with the probe's marks, or 429.
LIAR = """
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Liar(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Host", "").startswith("sleepy."):
            time.sleep(20)  # an app still starting: it accepts, and answers late
        spoof = self.headers.get("Host", "").startswith("spoof.")
        misdirect = self.headers.get("Host", "").startswith("misdirect.")
        self.send_response(502 if spoof else 421 if misdirect else 429)
        if spoof:
            self.send_header("X-Vsa-Upstream", "unreachable")
        if misdirect:
            self.send_header("X-Vsa-Vhost", "none")
        self.send_header("Content-Length", "0")
        self.end_headers()

ThreadingHTTPServer(("", 8080), Liar).serve_forever()
"""
LOAD_ZONE = [{"reverse_proxy": {"nginx": {"rate_limit_zones": {"load": {"rate": "2000r/s", "burst": 2000}}}}}]


def _docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def edge(render_module, tmp_path_factory):
    from tests.conftest import missing
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        missing("a running Docker engine")
    images = ensure_images(["nginx", "echo"], log=lambda line: None)
    out = tmp_path_factory.mktemp("edge")
    write_manifest(render_module(domains=DOMAINS), out)
    rp = out / "srv/flowbiz/reverse-proxy"
    for domain in DOMAINS:
        if domain.tls:
            self_signed(rp / f"letsencrypt/live/{domain.name}", domain.server_names)
    (rp / "logs/domains").mkdir(parents=True, exist_ok=True)
    for htpasswd in (rp / "nginx/auth").iterdir():
        os.chown(htpasswd, 0, 101)  # as the deploy leaves them (the writer sets no owners)
        htpasswd.chmod(0o640)
    for folder in (rp / "logs", rp / "logs/domains"):
        os.chown(folder, 101, 101)  # as the deploy leaves them: the master needs DAC_OVERRIDE to open its logs
    tag = uuid.uuid4().hex[:8]
    network, echo, nginx = f"vsa-edge-{tag}", f"vsa-edge-echo-{tag}", f"vsa-edge-nginx-{tag}"
    liar = f"vsa-edge-liar-{tag}"
    (out / "liar.py").write_text(LIAR)
    container = hub_config([]).reverse_proxy.nginx.container
    _docker("network", "create", network)
    try:
        _docker("run", "-d", "--name", echo, "--network", network, "--network-alias", "echo", images["echo"])
        _docker("run", "-d", "--name", liar, "--network", network, "--network-alias", "liar",
                "-v", f"{out / 'liar.py'}:/lab/liar.py:ro", "--entrypoint", "python3", images["echo"], "-u",
                "/lab/liar.py")
        mounts = [("nginx/conf.d", "/etc/nginx/conf.d"), ("nginx/snippets", "/etc/nginx/snippets"),
                  ("nginx/auth", "/etc/nginx/auth"), ("letsencrypt", "/etc/letsencrypt"),
                  ("certbot-www", "/var/www/certbot"), ("logs", "/var/log/nginx")]
        flags = [f for source, target in mounts for f in ("-v", f"{rp / source}:{target}")]
        flags += [f"--cap-drop={c}" for c in container.cap_drop] + [f"--cap-add={c}" for c in container.cap_add]
        flags += [f"--security-opt={o}" for o in container.security_opt]
        _docker("run", "-d", "--name", nginx, "--network", network, "-p", "127.0.0.1::80", "-p", "127.0.0.1::443",
                *flags, images["nginx"])
        ports = {p: int(_docker("port", nginx, f"{p}/tcp").splitlines()[0].rsplit(":", 1)[1]) for p in (80, 443)}
        deadline = time.monotonic() + 20
        while True:
            try:
                request("127.0.0.1", ports[80], "plain.example.com", tls=False)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(_docker("logs", nginx)) from None
                time.sleep(0.2)
        yield {"ports": ports, "ca": rp / "letsencrypt/live", "nginx": nginx}
    finally:
        subprocess.run(["docker", "rm", "-f", echo, liar, nginx], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)


@pytest.fixture(scope="module")
def render_module(sources):
    from tests.conftest import SECRETS
    from vsa_ops.render import render_host

    def make(**kwargs):
        return render_host(hub_config(LOAD_ZONE), sources, host="hub", secrets=SECRETS, **kwargs)
    return make


def http(edge, name, path="/", **kwargs):
    return request("127.0.0.1", edge["ports"][80], name, tls=False, path=path, **kwargs)[0]


def https(edge, name, path="/", **kwargs):
    return request("127.0.0.1", edge["ports"][443], name, tls=True, path=path,
                   ca_file=str(edge["ca"] / name / "fullchain.pem"), **kwargs)[0]


def seen(answer) -> dict:
    assert answer.status == 200, (answer.status, answer.body)
    return json.loads(answer.body)


@pytest.mark.parametrize("name", ["prefixed.example.com", "slashless.example.com"])
def test_a_path_in_the_upstream_is_a_prefix_of_every_uri(edge, name):
    assert seen(http(edge, name, "/orders/42?page=2"))["uri"] == "/base/orders/42?page=2"
    assert seen(http(edge, name, "/"))["uri"] == "/base/"
    assert seen(http(edge, name, "/a%20b?q=%2F"))["uri"] == "/base/a%20b?q=%2F"
    assert seen(http(edge, name, "/x/../etc/passwd"))["uri"] == "/base/etc/passwd"  # never above the prefix
    assert http(edge, name, "/../etc/passwd").status == 400


def test_an_upstream_without_a_path_gets_the_uri_as_sent(edge):
    assert seen(http(edge, "plain.example.com", "/orders/42?page=2"))["uri"] == "/orders/42?page=2"


@pytest.mark.parametrize("name, path, status", [
    ("plain.example.com", "/", 200),
    ("dead.example.com", "/", 502),
    ("secure.example.com", "/orders?x=1", 301),
])
def test_http_answers_carry_the_security_headers_and_no_hsts(edge, name, path, status):
    answer = http(edge, name, path)
    assert answer.status == status
    for header in EVERY_ANSWER:
        assert header in answer.headers, header
    assert HSTS not in answer.headers
    if status == 301:
        assert answer.headers["location"] == "https://secure.example.com/orders?x=1"  # path and query kept


def test_https_answers_carry_every_header_on_errors_too(edge):
    for answer in (https(edge, "secure.example.com"), https(edge, "private.example.com"),
                   https(edge, "private.example.com", user="alice", password="wrong")):
        for header in (HSTS, *EVERY_ANSWER):
            assert header in answer.headers, (answer.status, header)
    assert https(edge, "private.example.com").status == 401


def test_the_upstream_of_a_basic_auth_site_never_sees_the_password(edge):
    headers = seen(https(edge, "private.example.com", user="alice", password=PASSWORD))["headers"]
    assert not {k.lower() for k in headers} & {"authorization"}
    passed = seen(https(edge, "passing.example.com", user="alice", password=PASSWORD))["headers"]
    assert passed["Authorization"].startswith("Basic ")  # pass_auth: the domain asked for it


def test_a_name_no_site_serves_gets_no_site(edge):
    import http.client
    import socket

    with pytest.raises((ConnectionError, OSError)):  # HTTP: closed without an answer (444)
        request("127.0.0.1", edge["ports"][80], "unknown.example.com", tls=False)
    with pytest.raises(ssl.SSLError):  # HTTPS, unknown SNI: no handshake, no certificate shown
        request("127.0.0.1", edge["ports"][443], "unknown.example.com", tls=True, ca_file=None)
    # A served name's SNI with a Host no site serves: misdirected, not proxied.
    context = ssl.create_default_context(cafile=str(edge["ca"] / "secure.example.com/fullchain.pem"))
    connection = http.client.HTTPSConnection("127.0.0.1", edge["ports"][443], context=context, timeout=10)
    connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", edge["ports"][443])),
                                          server_hostname="secure.example.com")
    connection.request("GET", "/", headers={"Host": "unknown.example.com"})
    answer = connection.getresponse()
    assert answer.status == 421 and b"headers" not in answer.read()
    assert answer.getheader("X-Vsa-Vhost") == "none"  # the default server's: add-domain's probe waits on it
    # ... or with the Host of another site: misdirected too, not that site's content.
    connection.request("GET", "/", headers={"Host": "private.example.com"})
    answer = connection.getresponse()
    assert answer.status == 421 and b"headers" not in answer.read()
    connection.close()


def test_the_acme_webroot_answers_only_for_managed_names(edge):
    path = "/.well-known/acme-challenge/token"
    assert http(edge, "plain.example.com", path).status == 404  # the webroot's own answer: no such token
    with pytest.raises((ConnectionError, OSError)):
        http(edge, "unknown.example.com", path)


def test_reloads_drop_no_request(edge):
    """The load generator of the zero-drop lab test, against NGINX reloading five times under it."""
    from tests.lab.load import Load

    with Load(edge["ports"][443], "steady.example.com", str(edge["ca"] / "steady.example.com/fullchain.pem"),
              rate=60, workers=4, max_seconds=30) as load:
        for _ in range(5):
            time.sleep(0.5)
            _docker("exec", edge["nginx"], "nginx", "-s", "reload")
        time.sleep(1)
    assert load.result.failed == 0, str(load.result)
    assert load.result.sent >= 150, str(load.result)


def _burst(edge, name, count=100):
    return [http(edge, name).status for _ in range(count)]


def test_a_site_with_rate_limit_off_takes_a_burst_its_own_limit_and_the_default_do_not(edge):
    assert _burst(edge, "open.example.com") == [200] * 100
    own = _burst(edge, "own.example.com", 20)
    assert own[:4] == [200] * 4 and 429 in own  # 5r/s, burst 3: four at once, then 429
    assert 429 in _burst(edge, "plain.example.com")  # the design's perip zone: 10r/s, burst 20
    time.sleep(2.5)  # let the zones drain for the tests after this one


def test_nginx_own_502_is_marked_and_the_probe_names_the_upstream(edge):
    """NGINX's answer when the upstream does not resolve carries the mark and every security header; the
    probe keeps the vhost and names the upstream."""
    from vsa_ops.probe import UPSTREAM_MARK, probe_until_ok

    answer = http(edge, "dead.example.com")
    assert answer.status == 502 and answer.headers[UPSTREAM_MARK] == "unreachable"
    assert all(header in answer.headers for header in EVERY_ANSWER)
    assert UPSTREAM_MARK not in http(edge, "plain.example.com").headers
    assert http(edge, "dead.example.com", "/.vsa-ops/upstream-unreachable").status == 404  # internal only
    dead = next(d for d in DOMAINS if d.name == "dead.example.com")
    result = probe_until_ok("127.0.0.1", edge["ports"][443], edge["ports"][80], dead, settle=0)
    assert (result.problems, result.upstream, result.vhost_ok) == ([], "upstream not answering: 502", True)


def test_the_probe_stays_within_a_slow_site_limit_over_https(edge):
    """120r/m with no burst: a probe retrying at its old pace met 429 on its second request."""
    from vsa_ops.probe import probe_until_ok, site_budget

    slow = next(d for d in DOMAINS if d.name == "slow.example.com")
    nginx = hub_config(LOAD_ZONE).reverse_proxy.nginx
    ca, budget = str(edge["ca"] / slow.name / "fullchain.pem"), site_budget(slow, nginx)
    for _ in range(3):  # three tries in a row on one budget: it spaces them out
        result = probe_until_ok("127.0.0.1", edge["ports"][443], edge["ports"][80], slow, ca_file=ca, settle=0,
                                budget=budget)
        assert result.ok and result.status == 200, result.problems


def test_a_name_nginx_does_not_serve_yet_is_named_as_such_by_the_probe(edge):
    """What old workers answer for a new name just after a reload: the default server's closed connection."""
    from vsa_ops.probe import probe_until_ok

    result = probe_until_ok("127.0.0.1", edge["ports"][443], edge["ports"][80],
                            Domain(name="new.example.com", upstream="echo:8080", tls=False), settle=0)
    assert result.problems == ["NGINX closes the connection without an answer: no vhost for new.example.com yet "
                               "after 0 s"]


def test_an_app_cannot_pass_for_nginx_own_answers(edge):
    """An app that answers 502 or 421 itself with the marks, or 429 of its own: no mark passes through, and
    the probe names the upstream's answer and keeps the vhost (before: "not answering", and a rollback
    for the app's 429 taken for the site's rate limit)."""
    from vsa_ops.probe import UPSTREAM_MARK, VHOST_MARK, probe_until_ok

    assert UPSTREAM_MARK not in http(edge, "spoof.example.com").headers
    assert VHOST_MARK not in http(edge, "misdirect.example.com").headers
    for name, status in (("spoof.example.com", 502), ("busy.example.com", 429), ("misdirect.example.com", 421)):
        domain = next(d for d in DOMAINS if d.name == name)
        result = probe_until_ok("127.0.0.1", edge["ports"][443], edge["ports"][80], domain, settle=0)
        assert (result.problems, result.upstream, result.vhost_ok) == ([], f"upstream answers {status}", True)


def test_nginx_own_429_is_marked_and_the_probe_waits_for_it(edge):
    """The rate limit's 429 carries a mark and every security header; the probe counts it as pending."""
    from vsa_ops.probe import LIMIT_MARK, probe_until_ok

    answers = [http(edge, "own.example.com") for _ in range(20)]
    limited = [a for a in answers if a.status == 429]
    assert limited and all(a.headers.get(LIMIT_MARK) == "limited" for a in limited)
    assert all(header in limited[0].headers for header in EVERY_ANSWER)
    assert http(edge, "own.example.com", "/.vsa-ops/rate-limited").status == 404  # internal only (not limited)
    own = next(d for d in DOMAINS if d.name == "own.example.com")
    result = probe_until_ok("127.0.0.1", edge["ports"][443], edge["ports"][80], own, settle=0)
    assert result.problems == ["rate limited: own.example.com answers 429 (the limit for this address is spent) "
                               "after 0 s"]
    time.sleep(1.5)  # let the zone drain for the tests after this one


def test_an_upstream_that_answers_late_is_kept_as_not_answering(edge):
    """NGINX waits 60 s for an upstream that accepts and does not answer; the probe gives up after 10 s.
    Before: "HTTPS request failed: timed out", a vhost problem, and add-domain rolled the site back."""
    from vsa_ops.probe import probe_until_ok

    sleepy = next(d for d in DOMAINS if d.name == "sleepy.example.com")
    result = probe_until_ok("127.0.0.1", edge["ports"][443], edge["ports"][80], sleepy, settle=0,
                            ca_file=str(edge["ca"] / sleepy.name / "fullchain.pem"))
    assert (result.problems, result.upstream, result.vhost_ok) == ([], "upstream not answering within 10 s", True)
