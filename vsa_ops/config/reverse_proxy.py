"""The reverse proxy stack: the design's "Reverse Proxy Internals"."""

from __future__ import annotations

import re

from pydantic import field_validator, model_validator

from .base import Duration, Model, Size, matching, parse_duration
from .component import Component
from .containers import Container, RunAs
from .rate_limits import OFF, RateLimitZone, ZoneName
from .storage import CERTBOT_CA, CERTBOT_HOOKS, RELOAD_FLAGS, REVERSE_PROXY

EXT = ["flowbiz_ext"]


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Response headers that can sit inside `add_header NAME "VALUE" always;`: a plain name, and a
    value of printable ASCII with no quote, backslash or $ (NGINX would read a variable)."""
    for name, value in headers.items():
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", name):
            raise ValueError(f"{name!r} is not a header name")
        if not re.fullmatch(r"[\x20-\x7e]*", value) or any(c in value for c in '"\\$'):
            raise ValueError(f"value of {name} must be printable ASCII without quotes, $ or backslashes")
    return headers


class Nginx(Component):
    """Design: "NGINX (nginx:1.25-alpine)"; settings follow reliability.md section 9.1."""

    container: Container = Container(
        image="nginx:1.25-alpine",
        container_name="reverse-proxy-nginx",
        runs_as=RunAs(name="nginx", uid=101, set_in_compose=False),
        ports=["80:80", "443:443"],
        networks=EXT,
        # Design: "Volume mounts" table.
        mounts=[
            f"{REVERSE_PROXY}/nginx/conf.d:/etc/nginx/conf.d:ro",
            f"{REVERSE_PROXY}/nginx/snippets:/etc/nginx/snippets:ro",
            f"{REVERSE_PROXY}/nginx/auth:/etc/nginx/auth:ro",
            # NGINX only reads certificates and the challenge files: a compromised NGINX cannot
            # change what certbot runs or serves (design: rw; see README "What happens when things fail").
            f"{REVERSE_PROXY}/letsencrypt:/etc/letsencrypt:ro",
            f"{REVERSE_PROXY}/certbot-www:/var/www/certbot:ro",
            f"{REVERSE_PROXY}/logs:/var/log/nginx:rw",
        ],
        validate_command=["nginx", "-t", "-q"],
        reload_signal="HUP",
        # The master binds 80/443, opens logs in a folder owned by nginx (DAC_OVERRIDE), chowns its
        # temp folders and switches its workers to nginx.
        cap_add=["CHOWN", "DAC_OVERRIDE", "SETGID", "SETUID", "NET_BIND_SERVICE"],
    )
    log_format: str = "json_detailed"
    # Design: "json_detailed — domain, method, URI, status, bytes, request time, upstream info, user agent".
    log_fields: dict[str, str] = {
        "time": "$time_iso8601",
        "domain": "$host",
        "remote_addr": "$remote_addr",
        "method": "$request_method",
        "uri": "$request_uri",
        "protocol": "$server_protocol",
        "status": "$status",
        "bytes": "$body_bytes_sent",
        "request_time": "$request_time",
        "upstream_addr": "$upstream_addr",
        "upstream_status": "$upstream_status",
        "upstream_response_time": "$upstream_response_time",
        "user_agent": "$http_user_agent",
        "referer": "$http_referer",
        "request_id": "$request_id",
    }
    # Design: "Per-domain log files at /var/log/nginx/domains/<domain>.access.json".
    domain_log_dir: str = "/var/log/nginx/domains"
    # Design: "Security headers (included in every vhost via snippets)". Sent with `always`.
    security_headers: dict[str, str] = {
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": ("default-src 'self'; base-uri 'self'; object-src 'none'; form-action 'self'; "
                                    "frame-ancestors 'none'; upgrade-insecure-requests"),
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    }
    # Design: "Rate limiting zones".
    rate_limit_zones: dict[ZoneName, RateLimitZone] = {
        "perip": RateLimitZone(),
        "auth": RateLimitZone(rate="5r/s", burst=10),
        # Login attempts on basic-auth sites, apart from normal traffic: only requests that carry
        # credentials (each costs a bcrypt check in a worker) count, per address (00-http.conf's map).
        "login": RateLimitZone(key="$vsa_credentials_addr", rate="10r/s", burst=40, nodelay=False),
    }
    # The zone every basic-auth site's location applies on top of its own rate_limit.
    login_zone: ZoneName = "login"
    limit_req_status: int = 429
    # The zone of each site that sets its own rate (`rate_limit: 50r/s/100`), in that site's vhost file:
    # about 16,000 client addresses per megabyte; NGINX forgets the oldest when it is full.
    site_zone_size: Size = "1m"
    # Mozilla intermediate (reliability.md section 1.1); no X25519MLKEM768 before OpenSSL 3.5.
    ssl_protocols: str = "TLSv1.2 TLSv1.3"
    ssl_ciphers: str = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                        "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
    ssl_ecdh_curve: str = "X25519:prime256v1:secp384r1"
    # Docker's embedded DNS: upstreams resolve per request, so a dead one breaks only its own vhost.
    resolver: str = "127.0.0.11"
    client_max_body_size: Size = "16m"
    # Listen on IPv6 as well; off by default because many Docker hosts run without IPv6.
    listen_ipv6: bool = False

    @field_validator("security_headers")
    @classmethod
    def _header_values(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)

    @model_validator(mode="after")
    def _login_zone_exists(self) -> "Nginx":
        if self.login_zone not in self.rate_limit_zones:
            raise ValueError(f"login_zone {self.login_zone!r} is not one of rate_limit_zones")
        if OFF in self.rate_limit_zones:
            raise ValueError(f"rate_limit_zones: {OFF!r} is not a zone's name (a site's `rate_limit: {OFF}` turns "
                             f"limiting off)")
        return self


AcmeServer = matching(r"https://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~/-]*)?",
                      "must be an https:// ACME directory URL")
Email = matching(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "must be an e-mail address")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# Written by certbot's deploy hook when a certificate was really renewed; the reloader acts on it.
RELOAD_FLAG_DIR = "/run/vsa-reload"
RELOAD_FLAG = f"{RELOAD_FLAG_DIR}/nginx"
CA_DIR = "/etc/vsa-acme"
CA_BUNDLE = f"{CA_DIR}/vsa-acme-ca.pem"
# Where certbot runs deploy hooks from (its --config-dir is /etc/letsencrypt).
HOOKS_DIR = "/etc/letsencrypt/renewal-hooks/deploy"


class Certbot(Component):
    """Design: "Certbot (certbot/certbot:v2.10.0)" with its 12 h renewal loop."""

    container: Container = Container(
        image="certbot/certbot:v2.10.0",
        container_name="reverse-proxy-certbot",
        runs_as=RunAs(name="root", uid=0),
        # What root writes for certbot (hooks, CA bundle) is mounted read-only, over the letsencrypt/
        # that certbot writes; Docker mounts the parent first.
        mounts=[f"{REVERSE_PROXY}/letsencrypt:/etc/letsencrypt:rw", f"{REVERSE_PROXY}/certbot-www:/var/www/certbot:rw",
                f"{CERTBOT_HOOKS}:{HOOKS_DIR}:ro", f"{CERTBOT_CA}:{CA_DIR}:ro", f"{RELOAD_FLAGS}:{RELOAD_FLAG_DIR}:rw"],
        networks=EXT,
    )
    renew_interval: Duration = "12h"
    webroot: str = "/var/www/certbot"
    # The ACME directory: Let's Encrypt (default), its staging, or any RFC 8555 server.
    acme_server: AcmeServer = LETS_ENCRYPT
    # PEM bundle certbot trusts for the ACME server's own HTTPS, for private CAs; None: system CAs.
    acme_ca_bundle: str | None = None
    email: Email | None = None

    @field_validator("acme_ca_bundle")
    @classmethod
    def _bundle(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM certificates")
        return value

    def derived_environment(self) -> dict[str, str]:
        return {"REQUESTS_CA_BUNDLE": CA_BUNDLE} if self.acme_ca_bundle else {}

    def derived_entrypoint(self) -> list[str]:
        return ["/bin/sh", "-c",
                f"trap exit TERM; while :; do certbot renew --webroot -w {self.webroot} --quiet "
                f"--server {self.acme_server}; sleep {self.renew_interval} & wait $!; done"]

    def issue_command(self, names: list[str]) -> list[str]:
        """``certbot certonly`` for one certificate named after its first name."""
        command = ["certbot", "certonly", "--webroot", "-w", self.webroot, "--cert-name", names[0]]
        for name in names:
            command += ["-d", name]
        command += ["--server", self.acme_server, "--agree-tos", "--non-interactive", "--keep-until-expiring",
                    "--no-random-sleep-on-renew"]
        command += ["-m", self.email] if self.email else ["--register-unsafely-without-email"]
        return command


class Reloader(Component):
    """Design: "NGINX Reloader (docker:27-cli)". Reloads NGINX (after ``nginx -t``) within a minute
    of a real renewal, flagged by certbot's deploy hook, and every ``interval`` as a safety net."""

    container: Container = Container(
        image="docker:27-cli",
        container_name="reverse-proxy-reloader",
        runs_as=RunAs(name="root", uid=0),
        # It needs only the flag certbot's hook leaves (and Docker, to reach NGINX).
        mounts=["/var/run/docker.sock:/var/run/docker.sock:ro", f"{RELOAD_FLAGS}:{RELOAD_FLAG_DIR}:rw"],
        network_mode="none",
        root_access_reason="the Docker socket: docker exec nginx -s reload after a renewal",
    )
    interval: Duration = "6h"
    check_every: Duration = "1m"
    nginx_container: str = "reverse-proxy-nginx"

    def derived_entrypoint(self) -> list[str]:
        every, interval = parse_duration(self.check_every), parse_duration(self.interval)
        return ["/bin/sh", "-c",
                f"trap exit TERM; waited=0; while :; do sleep {every} & wait $!; waited=$((waited + {every})); "
                f"if [ -e {RELOAD_FLAG} ] || [ $waited -ge {interval} ]; then rm -f {RELOAD_FLAG}; waited=0; "
                f"docker exec {self.nginx_container} sh -c 'nginx -t -q && nginx -s reload' 2>/dev/null; fi; done"]


class ReverseProxy(Model):
    nginx: Nginx = Nginx()
    certbot: Certbot = Certbot()
    reloader: Reloader = Reloader()
