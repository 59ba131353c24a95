"""The probe against a real local HTTP server that, like NGINX just after a reload, answers with the old
configuration for a moment."""

import http.server
import threading

import pytest

from vsa_ops.domains import Domain
from vsa_ops.probe import probe_until_ok


def _serve(status_for):
    """A local HTTP server answering every GET with ``status_for(handler)`` and an empty body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status_for(self))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


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
        domain = Domain(name="private.vsa.test", upstream="demo-app:8080", tls=False,
                        auth={"alice": hash_password("right-horse")})
        result = probe_until_ok("127.0.0.1", port, port, domain, password="right-horse", settle=0)
        assert result.ok is ok, result.problems
        if not ok:
            assert result.problems == ["with a wrong password the answer is 200, not 401"]
    finally:
        server.shutdown()
