"""Probe a domain as a client would: TLS handshake with SNI, the certificate it serves, the status
and headers of its answers (the security headers on each, HSTS over HTTPS only), basic auth (401
without a password and with a wrong one, not with the right one), and a path beyond ``/`` when the
upstream has a prefix.

It tells apart NGINX not serving the new vhost yet (old workers after the asynchronous reload: no
handshake for the name, the default server's 421 or closed connection, an old certificate), the vhost
serving while its upstream does not answer (NGINX's own 502/504, which the vhost marks with
X-Vsa-Upstream), the site's rate limit (NGINX's 429, marked with X-Vsa-Limit: retried), and the site
serving. A 429, and any other 4xx or 5xx than the 401 a basic-auth site owes a client without the
password, is never serving. Retries back off and stay within the site's own rate limit."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import socket
import ssl
import time
from dataclasses import dataclass, field

from cryptography import x509

from .config.rate_limits import RequestLimit, request_limit

# A reload (HUP to NGINX's master) returns before the new workers take over; until the old ones exit, a connection
# may still meet the previous configuration. A probe retries for this long before it counts a failure,
# first after FIRST_RETRY, then twice as long each time up to LONGEST_RETRY.
SETTLE_SECONDS = 10.0
FIRST_RETRY = 0.05
LONGEST_RETRY = 1.0
# The vhost's own page for a 502/504 NGINX answers when the upstream does not (templates/vhost.conf.j2).
UPSTREAM_MARK = "x-vsa-upstream"
# ... and for its rate limit's answer (an app's own 429 has no such header: it is the upstream's answer).
LIMIT_MARK = "x-vsa-limit"
# ... and the default server's 421 (stacks/reverse-proxy/nginx/conf.d/01-default.conf.j2): no vhost yet.
VHOST_MARK = "x-vsa-vhost"

HSTS = "strict-transport-security"
# On every answer of every site, errors and redirects included.
EVERY_ANSWER = ("x-frame-options", "x-content-type-options", "content-security-policy", "referrer-policy",
                "permissions-policy")
REQUIRED_HEADERS = (HSTS, *EVERY_ANSWER)  # an HTTPS answer's
# Asked for beyond `/` when the upstream has a path: an upstream that shows what it received (JSON with
# "uri", as the lab's echo does) must have got it behind the prefix.
DEEP_PATH = "/vsa-ops-probe/deep?probe=1"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Probe:
    domain: str
    # What is wrong with the vhost itself (add-domain rolls it back).
    problems: list[str] = field(default_factory=list)
    # Why this answer does not count yet (not served yet, rate limited): retried, a problem once time is up.
    pending: str | None = None
    # The vhost serves, its upstream does not: "upstream not answering: 502", "upstream answers 404".
    upstream: str | None = None
    status: int | None = None
    issuer: str = ""
    not_after: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        """The site serves: the vhost and its upstream."""
        return not self.problems and not self.pending and not self.upstream

    @property
    def vhost_ok(self) -> bool:
        """NGINX serves the vhost as it should, whatever its upstream does."""
        return not self.problems and not self.pending


class RequestBudget:
    """The probe's share of a site's rate limits: at most half a burst at once, refilled at half the
    slowest rate, so that the probe alone never meets a 429 and leaves the rest to the site's clients
    behind the same address. No limits (``rate_limit: off``): no waiting."""

    def __init__(self, limits: list[RequestLimit | None] = (), clock=time.monotonic, sleep=time.sleep):
        limits = [limit for limit in limits if limit is not None]
        self.rate = min(limit.per_second for limit in limits) / 2 if limits else None
        self.capacity = max(1.0, (min(limit.burst for limit in limits) + 1) / 2) if limits else 0.0
        self.tokens, self._clock, self._sleep = self.capacity, clock, sleep
        self._at = clock()

    def wait(self) -> float:
        """Seconds until one more request fits."""
        if self.rate is None:
            return 0.0
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now
        return max(0.0, (1 - self.tokens) / self.rate)

    def spend(self) -> None:
        """Wait until one more request fits, and count it."""
        if self.rate is None:
            return
        self.wait()
        if self.tokens < 1:
            self._sleep((1 - self.tokens) / self.rate)
            self.tokens, self._at = 1.0, self._clock()
        self.tokens -= 1

    def spent_elsewhere(self) -> None:
        """A 429: the site's budget for this address went to someone else; start again from empty."""
        self.tokens, self._at = 0.0, self._clock()


class NoAnswer(TimeoutError):
    """Connected (and the TLS handshake done), the request sent, no answer in time: through a vhost,
    NGINX still waiting for its upstream (it gives up at proxy_read_timeout, 60 s, with a marked 504)."""


def request(address: str, port: int, domain: str, *, tls: bool, ca_file: str | None = None, path: str = "/",
            user: str | None = None, password: str | None = None, timeout: float = 10) -> tuple[Answer, bytes | None]:
    """One GET to ``address:port`` for ``domain`` (SNI and Host); returns the answer and the peer cert."""
    headers = {"Host": domain, "User-Agent": "vsa-ops-probe"}
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    if tls:
        context = ssl.create_default_context(cafile=ca_file)
        connection = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
        connection.sock = context.wrap_socket(socket.create_connection((address, port), timeout=timeout),
                                              server_hostname=domain)
        certificate = connection.sock.getpeercert(binary_form=True)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
        connection.connect()
        certificate = None
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read(65536))
    except TimeoutError:
        raise NoAnswer(timeout) from None
    finally:
        connection.close()
    return answer, certificate


def site_budget(domain, nginx) -> RequestBudget:
    """The budget for ``domain`` under ``nginx``'s zones: its own limit and, with basic auth, the login zone."""
    login = request_limit(nginx.login_zone, domain.name, nginx.rate_limit_zones) if domain.auth else None
    return RequestBudget([domain.request_limit(nginx), login])


def probe_domain(address: str, https_port: int, http_port: int, domain, *, ca_file: str | None = None,
                 password: str | None = None, budget: RequestBudget | None = None) -> Probe:
    """Everything add-domain promises about ``domain`` (a Domain), checked from outside, once."""
    result = Probe(domain.name)
    budget = budget or RequestBudget()
    user = next(iter(domain.auth), None)
    port = https_port if domain.tls else http_port

    def ask(path: str = "/", user: str | None = None, password: str | None = None) -> tuple[Answer, bytes | None]:
        budget.spend()  # every request to the site's location counts against its limit
        return request(address, port, domain.name, tls=domain.tls, ca_file=ca_file, path=path, user=user,
                       password=password)

    try:
        if domain.tls:
            redirect, _ = request(address, http_port, domain.name, tls=False)  # the HTTP server has no limit
            if redirect.status == 404:
                result.pending = f"NGINX serves only ACME challenges for {domain.name} yet (its TLS vhost is not live)"
                return result
            if redirect.status != 301 or not redirect.headers.get("location", "").startswith(f"https://{domain.name}"):
                result.problems.append(f"HTTP answers {redirect.status}, not 301 to https://{domain.name}/")
            _check_headers(result, "the redirect", redirect, https=False)
        answer, certificate = ask(user=user, password=password)
        if _not_counted(result, budget, answer):
            return result
        _judge(result, domain, user, answer)
        if domain.upstream_prefix and not result.upstream:
            _check_deep_path(result, domain, ask(DEEP_PATH, user=user, password=password)[0])
        _check_headers(result, "the answer", answer, https=domain.tls)
        if user is not None:
            anonymous, _ = ask()
            if _not_counted(result, budget, anonymous):
                return result
            if anonymous.status != 401:
                result.problems.append(f"without a password the answer is {anonymous.status}, not 401")
            _check_headers(result, "the 401", anonymous, https=domain.tls)
            # A password that differs from the right one in every position (never the right one itself).
            wrong = "".join("b" if c == "a" else "a" for c in (password or "x"))
            refused, _ = ask(user=user, password=wrong)
            if _not_counted(result, budget, refused):
                return result
            if refused.status != 401:
                result.problems.append(f"with a wrong password the answer is {refused.status}, not 401")
    except NoAnswer as error:
        result.upstream = f"upstream not answering within {error.args[0]:g} s"
        return result
    except ssl.SSLCertVerificationError as error:
        result.pending = f"the certificate served for {domain.name} does not verify: {error.verify_message}"
        return result
    except ssl.SSLError as error:
        result.pending = f"NGINX refuses the TLS handshake for {domain.name}, no vhost for it yet ({error.reason})"
        return result
    except (http.client.RemoteDisconnected, ConnectionResetError):
        result.pending = f"NGINX closes the connection without an answer: no vhost for {domain.name} yet"
        return result
    except (OSError, http.client.HTTPException) as error:
        result.pending = f"{'HTTPS' if domain.tls else 'HTTP'} request failed: {error}"
        return result
    if certificate:
        cert = x509.load_der_x509_certificate(certificate)
        result.issuer = cert.issuer.rfc4514_string()
        result.not_after = cert.not_valid_after_utc
    return result


def _not_counted(result: Probe, budget: RequestBudget, answer: Answer) -> bool:
    """An answer from somewhere other than the new vhost at work: the default server's (NGINX does not
    serve the name yet) or the rate limit's."""
    if answer.status == 421 and answer.headers.get(VHOST_MARK) == "none":
        result.pending = f"the default server answers 421: no vhost for {result.domain} yet"
    elif answer.headers.get(LIMIT_MARK) == "limited":  # 429, or what limit_req_status says
        budget.spent_elsewhere()
        result.pending = (f"rate limited: {result.domain} answers {answer.status} (the limit for this address "
                          f"is spent)")
    return result.pending is not None


def _judge(result: Probe, domain, user: str | None, answer: Answer) -> None:
    """The main answer: serving (2xx, 3xx), a vhost problem, or the upstream's state."""
    result.status = answer.status
    if user is not None and answer.status == 401:
        result.problems.append(f"the right password for {user} gets 401: the deployed NGINX cannot verify its "
                               f"bcrypt hash (its libc crypt() lacks bcrypt)")
    elif user is not None and answer.status == 403:
        result.problems.append(f"the right password for {user} gets 403, not the site")
    elif answer.status in (502, 504) and answer.headers.get(UPSTREAM_MARK) == "unreachable":
        result.upstream = f"upstream not answering: {answer.status}"
    elif answer.status >= 400:
        result.upstream = f"upstream answers {answer.status}"


def _check_headers(result: Probe, what: str, answer: Answer, *, https: bool) -> None:
    missing = [h for h in (REQUIRED_HEADERS if https else EVERY_ANSWER) if h not in answer.headers]
    if missing:
        result.problems.append(f"{what} lacks headers: {', '.join(missing)}")
    if not https and HSTS in answer.headers:
        result.problems.append(f"{what} over HTTP carries Strict-Transport-Security")


def _check_deep_path(result: Probe, domain, answer: Answer) -> None:
    if answer.status >= 500:
        result.problems.append(f"{DEEP_PATH} answers {answer.status}")
        return
    try:
        seen = json.loads(answer.body).get("uri")
    except (ValueError, AttributeError):
        return  # an upstream that does not show what it received: the status is all there is to check
    if isinstance(seen, str) and seen != domain.upstream_prefix + DEEP_PATH:
        result.problems.append(f"{DEEP_PATH} reaches the upstream as {seen}, not {domain.upstream_prefix}{DEEP_PATH}")


def probe_until_ok(*args, settle: float = SETTLE_SECONDS, budget: RequestBudget | None = None, **kwargs) -> Probe:
    """``probe_domain`` again, backing off, until the site serves or ``settle`` seconds have gone; the
    last result, where an answer that still did not count (not served yet, rate limited) is a problem."""
    budget = budget or RequestBudget()
    deadline, delay = time.monotonic() + settle, FIRST_RETRY
    while True:
        result = probe_domain(*args, budget=budget, **kwargs)
        # a slow site's limit (1r/m) may put the next request beyond the deadline: no try waits for it
        if result.ok or time.monotonic() + max(delay, budget.wait()) > deadline:
            break
        time.sleep(delay)
        delay = min(2 * delay, LONGEST_RETRY)
    if result.pending:
        result.problems.append(f"{result.pending} after {settle:g} s")
    return result
