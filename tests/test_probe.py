"""The probe against a real local HTTP server that, like NGINX just after a reload, answers with the old
configuration for a moment."""

import http.server
import threading

import pytest

from vsa_ops.domains import Domain
from vsa_ops.probe import EVERY_ANSWER, probe_until_ok

# What NGINX adds to every answer of an HTTP-only site (the probe checks them).
HEADERS = {name: "x" for name in EVERY_ANSWER}


def send_headers(handler, headers=HEADERS):
    for name, value in headers.items():
        handler.send_header(name, value)


def _serve(status_for):
    """A local HTTP server answering every GET with ``status_for(handler)``, the headers and an empty body."""
    return _server(lambda handler: (status_for(handler), HEADERS, b""))


@pytest.fixture
def settling_server():
    """Answers 502 to its first two requests, then 200."""
    seen = []

    def status(handler):
        seen.append(handler.headers["Host"])
        return 502 if len(seen) <= 2 else 200

    server = _serve(status)
    yield server.server_address[1], seen
    server.shutdown()


def test_the_probe_waits_for_the_new_configuration(settling_server):
    port, seen = settling_server
    domain = Domain(name="plain.vsa.test", upstream="demo-app:8080", tls=False)
    result = probe_until_ok("127.0.0.1", port, port, domain, settle=5)
    assert result.ok and result.status == 200
    assert seen == ["plain.vsa.test"] * 3


def test_the_probe_reports_what_it_saw_last_when_time_runs_out(settling_server):
    port, seen = settling_server
    domain = Domain(name="plain.vsa.test", upstream="demo-app:8080", tls=False)
    result = probe_until_ok("127.0.0.1", port, port, domain, settle=0)
    assert not result.ok and len(seen) == 1
    assert result.problems == ["the upstream http://demo-app:8080 answers 502"]


def _auth_server(accepts):
    """A server that answers 200 to credentials ``accepts(user, password)`` allows, 401 to the rest."""
    import base64

    def status(handler):
        header = handler.headers.get("Authorization", "")
        user, _, password = base64.b64decode(header[6:]).decode().partition(":") if header else ("", "", "")
        return 200 if header and accepts(user, password) else 401

    return _serve(status)


@pytest.mark.parametrize("accepts, ok", [
    (lambda user, password: password == "right-horse", True),
    (lambda user, password: True, False),  # any password gets in: the probe must say so
])
def test_the_probe_checks_that_a_wrong_password_is_refused(accepts, ok):
    from vsa_ops.htpasswd import hash_password

    server = _auth_server(accepts)
    try:
        port = server.server_address[1]
        domain = Domain(name="private.vsa.test", upstream="demo-app:8080", tls=False, insecure_auth=True,
                        auth={"alice": hash_password("right-horse")})
        result = probe_until_ok("127.0.0.1", port, port, domain, password="right-horse", settle=0)
        assert result.ok is ok, result.problems
        if not ok:
            assert result.problems == ["with a wrong password the answer is 200, not 401"]
    finally:
        server.shutdown()


def _server(answer):
    """A server whose GET handler is ``answer(handler)`` -> (status, headers, body)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = answer(self)
            self.send_response(status)
            send_headers(self, headers)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("headers, problem", [
    (HEADERS, None),
    ({k: v for k, v in HEADERS.items() if k != "permissions-policy"}, "the answer lacks headers: permissions-policy"),
    ({**HEADERS, "Strict-Transport-Security": "max-age=1"}, "the answer over HTTP carries Strict-Transport-Security"),
])
def test_the_probe_checks_the_headers_of_an_http_only_site(headers, problem):
    server = _server(lambda handler: (200, headers, b""))
    try:
        domain = Domain(name="plain.vsa.test", upstream="demo-app:8080", tls=False)
        result = probe_until_ok("127.0.0.1", server.server_address[1], server.server_address[1], domain, settle=0)
        assert result.problems == ([problem] if problem else [])
    finally:
        server.shutdown()


@pytest.mark.parametrize("prefix, problem", [
    ("/base", None),
    ("", "/vsa-ops-probe/deep?probe=1 reaches the upstream as /vsa-ops-probe/deep?probe=1, "
         "not /base/vsa-ops-probe/deep?probe=1"),
])
def test_the_probe_asks_a_prefixed_upstream_for_a_path_beyond_the_root(prefix, problem):
    """An echo upstream behind a proxy that adds ``prefix``: the probe sees where its deep path arrived."""
    import json

    seen = []

    def echo(handler):
        seen.append(handler.path)
        return 200, HEADERS, json.dumps({"uri": prefix + handler.path}).encode()

    server = _server(echo)
    try:
        domain = Domain(name="plain.vsa.test", upstream="demo-app:8080/base/", tls=False)
        result = probe_until_ok("127.0.0.1", server.server_address[1], server.server_address[1], domain, settle=0)
        assert "/vsa-ops-probe/deep?probe=1" in seen
        assert result.problems == ([problem] if problem else [])
    finally:
        server.shutdown()
