"""Probe a domain as a client would: TLS handshake with SNI, the certificate it serves, the status
and headers of its answers (the security headers on each, HSTS over HTTPS only), basic auth (401
without a password and with a wrong one, not with the right one), and a path beyond ``/`` when the
upstream has a prefix."""

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

# `nginx -s reload` returns before the new workers take over; until the old ones exit, a connection
# may still meet the previous configuration. A probe retries for this long before it counts a failure.
SETTLE_SECONDS = 10.0
RETRY_EVERY = 0.05

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
    problems: list[str] = field(default_factory=list)
    status: int | None = None
    issuer: str = ""
    not_after: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


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
        certificate = None
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read(65536))
    finally:
        connection.close()
    return answer, certificate


def probe_domain(address: str, https_port: int, http_port: int, domain, *, ca_file: str | None = None,
                 password: str | None = None) -> Probe:
    """Everything add-domain promises about ``domain`` (a Domain), checked from outside."""
    result = Probe(domain.name)
    user = next(iter(domain.auth), None)
    port = https_port if domain.tls else http_port
    try:
        if domain.tls:
            redirect, _ = request(address, http_port, domain.name, tls=False)
            if redirect.status != 301 or not redirect.headers.get("location", "").startswith(f"https://{domain.name}"):
                result.problems.append(f"HTTP answers {redirect.status}, not 301 to https://{domain.name}/")
            _check_headers(result, "the redirect", redirect, https=False)
        answer, certificate = request(address, port, domain.name, tls=domain.tls, ca_file=ca_file, user=user,
                                      password=password)
        if domain.upstream_prefix:
            _check_deep_path(result, domain, request(address, port, domain.name, tls=domain.tls, ca_file=ca_file,
                                                     path=DEEP_PATH, user=user, password=password)[0])
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        result.problems.append(f"{'HTTPS' if domain.tls else 'HTTP'} request failed: {error}")
        return result
    result.status = answer.status
    if certificate:
        cert = x509.load_der_x509_certificate(certificate)
        result.issuer = cert.issuer.rfc4514_string()
        result.not_after = cert.not_valid_after_utc
    if user is not None and answer.status == 401:
        result.problems.append(f"the right password for {user} gets 401: the deployed NGINX cannot verify its "
                               f"bcrypt hash (its libc crypt() lacks bcrypt)")
    elif user is not None and answer.status == 403:
        result.problems.append(f"the right password for {user} gets 403, not the site")
    elif answer.status >= 500:
        result.problems.append(f"the upstream {domain.upstream} answers {answer.status}")
    _check_headers(result, "the answer", answer, https=domain.tls)
    if user is not None:
        anonymous, _ = request(address, port, domain.name, tls=domain.tls, ca_file=ca_file)
        if anonymous.status != 401:
            result.problems.append(f"without a password the answer is {anonymous.status}, not 401")
        _check_headers(result, "the 401", anonymous, https=domain.tls)
        # A password that differs from the right one in every position (never the right one itself).
        wrong = "".join("b" if c == "a" else "a" for c in (password or "x"))
        refused, _ = request(address, port, domain.name, tls=domain.tls, ca_file=ca_file, user=user, password=wrong)
        if refused.status != 401:
            result.problems.append(f"with a wrong password the answer is {refused.status}, not 401")
    return result


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


def probe_until_ok(*args, settle: float = SETTLE_SECONDS, **kwargs) -> Probe:
    """``probe_domain`` again and again until it passes or ``settle`` seconds have gone; the last result."""
    deadline = time.monotonic() + settle
    while True:
        result = probe_domain(*args, **kwargs)
        if result.ok or time.monotonic() >= deadline:
            return result
        time.sleep(RETRY_EVERY)
