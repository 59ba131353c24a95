"""The probe against a real local HTTP server that, like NGINX just after a reload, answers with the old
configuration for a moment."""

import http.server
import threading
import time

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
    # a 502 without the vhost's mark is the app's own answer: the vhost works, the upstream does not
    assert result.problems == [] and result.upstream == "upstream answers 502"


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


# What the vhost's own error page adds to NGINX's 502/504 when the upstream does not answer.
MARKED = {**HEADERS, "X-Vsa-Upstream": "unreachable"}
LIMITED = {**HEADERS, "X-Vsa-Limit": "limited"}  # the site's rate limit: NGINX's own 429
NO_VHOST = {**HEADERS, "X-Vsa-Vhost": "none"}  # the default server's 421


def _plain(rate_limit="perip"):
    return Domain(name="plain.vsa.test", upstream="demo-app:8080", tls=False, rate_limit=rate_limit)


def _probe(server, domain=None, **kwargs):
    port = server.server_address[1]
    return probe_until_ok("127.0.0.1", port, port, domain or _plain(), **kwargs)


@pytest.mark.parametrize("status, headers, upstream, problems", [
    (200, HEADERS, None, []),
    (302, HEADERS, None, []),
    (502, MARKED, "upstream not answering: 502", []),
    (504, MARKED, "upstream not answering: 504", []),
    (502, HEADERS, "upstream answers 502", []),  # the app's own 502 passes through unmarked
    (404, HEADERS, "upstream answers 404", []),
    (500, HEADERS, "upstream answers 500", []),
    (429, LIMITED, None, ["rate limited: plain.vsa.test answers 429 (the limit for this address is spent) after 0 s"]),
    (429, HEADERS, "upstream answers 429", []),  # the app's own 429: the vhost serves, it stays
    (503, LIMITED, None, ["rate limited: plain.vsa.test answers 503 (the limit for this address is spent) after 0 s"]),
    (421, NO_VHOST, None, ["the default server answers 421: no vhost for plain.vsa.test yet after 0 s"]),
    (421, HEADERS, "upstream answers 421", []),  # the app's own 421
])
def test_only_a_2xx_or_3xx_answer_is_serving(status, headers, upstream, problems):
    """Before: a 429 (the probe's own retries had spent the site's limit) and any 4xx counted as serving."""
    server = _server(lambda handler: (status, headers, b""))
    try:
        result = _probe(server, settle=0)
        assert (result.ok, result.upstream, result.problems) == (status < 400, upstream, problems)
        assert result.vhost_ok is (not problems)
    finally:
        server.shutdown()


def test_a_connection_closed_without_an_answer_is_not_served_yet_then_the_upstream_is_named():
    """The default server closes the connection (444) until the new workers take over; then the vhost
    answers NGINX's own 502: not a vhost problem, the upstream's."""
    seen = []

    class Closing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            if len(seen) <= 2:
                self.close_connection = True
                return  # no answer at all, like NGINX's `return 444`
            self.send_response(502)
            send_headers(self, MARKED)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Closing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = _probe(server, settle=1)
        assert result.problems == [] and result.upstream == "upstream not answering: 502"
        assert len(seen) >= 3
    finally:
        server.shutdown()


def test_a_vhost_never_served_is_a_problem_naming_why():
    server = _server(lambda handler: (421, NO_VHOST, b""))
    try:
        result = _probe(server, settle=0.3)
        assert result.problems == ["the default server answers 421: no vhost for plain.vsa.test yet after 0.3 s"]
    finally:
        server.shutdown()


class LimitReq:
    """NGINX's limit_req with nodelay, for one client (ngx_http_limit_req_lookup): the excess over one
    request drains at ``rate`` per second; a request that would take it past ``burst`` gets 429 and does
    not count."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst, self.excess, self.last = rate, burst, None, 0.0
        self.lock = threading.Lock()

    def admit(self) -> bool:
        import time
        with self.lock:
            now = time.monotonic()
            if self.excess is None:
                self.excess, self.last = 0.0, now
                return True
            excess = max(0.0, self.excess - self.rate * (now - self.last) + 1)
            if excess > self.burst:
                return False
            self.excess, self.last = excess, now
            return True


@pytest.mark.parametrize("rate_limit, rate, burst", [("perip", 10, 20), ("4r/s/2", 4, 2), ("120r/m/0", 2, 0)])
def test_retries_back_off_and_stay_within_the_site_rate_limit(rate_limit, rate, burst):
    """A site whose upstream is down, behind its own limit: for the whole settle time the probe retries and
    never meets a 429 (before: a retry every 50 ms spent the limit, and the 429 counted as serving)."""
    from vsa_ops.config.reverse_proxy import Nginx
    from vsa_ops.probe import site_budget

    limit, answers = LimitReq(rate, burst), []

    def answer(handler):
        answers.append(502 if limit.admit() else 429)
        return answers[-1], MARKED if answers[-1] == 502 else LIMITED, b""

    server = _server(answer)
    try:
        domain = _plain(rate_limit)
        result = _probe(server, domain, settle=2, budget=site_budget(domain, Nginx()))
        assert 429 not in answers and result.upstream == "upstream not answering: 502" and not result.problems
        assert 2 <= len(answers) <= 12  # backing off from 50 ms, not 40 tries in 2 s (none past them)
    finally:
        server.shutdown()


def test_a_429_empties_the_budget_so_the_next_try_waits_for_the_limit():
    from vsa_ops.config.rate_limits import RequestLimit
    from vsa_ops.probe import RequestBudget

    now, slept = [0.0], []

    def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    budget = RequestBudget([RequestLimit("site.x", "2r/s", 3, True)], clock=lambda: now[0], sleep=sleep)
    for _ in range(2):  # half the burst + 1, at once
        budget.spend()
    assert slept == []
    budget.spend()  # then one per second: half the rate
    assert slept == [1.0]
    budget.spent_elsewhere()
    budget.spend()
    assert slept == [1.0, 1.0]
    assert RequestBudget([None]).rate is None  # rate_limit: off


def test_a_slow_site_limit_never_keeps_the_probe_past_its_settle_time():
    """A site at 12r/m with no burst and its upstream down: the next request within the budget is 10 s
    away; the probe ends at its settle time instead of sleeping for it (before: add-domain waited 10 s
    more here, two minutes at 1r/m, four with basic auth)."""
    from vsa_ops.config.reverse_proxy import Nginx
    from vsa_ops.probe import site_budget

    answers = []
    server = _server(lambda handler: answers.append(502) or (502, MARKED, b""))
    try:
        domain = _plain("12r/m/0")
        started = time.monotonic()
        result = _probe(server, domain, settle=1, budget=site_budget(domain, Nginx()))
        assert time.monotonic() - started < 3
        assert (result.upstream, result.problems, answers) == ("upstream not answering: 502", [], [502])
    finally:
        server.shutdown()
