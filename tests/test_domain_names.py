"""Domain input is validated so that no field can carry NGINX configuration into a vhost."""

import pytest
from pydantic import ValidationError

from vsa_ops.domains import Domain, domain_name, upstream_url


@pytest.mark.parametrize("name", [
    "", "exa mple.com", "example.com;", "ex{ample}.com", 'ex"ample.com', "ex'ample.com", "example.com\nevil",
    "a..com", ".example.com", "-example.com", "example-.com", "a" * 64 + ".com", ("a" * 60 + ".") * 5 + "com",
    "192.168.1.1", "::1", "http://example.com", "example.com:8080", "example.com/path", "localhost", "example.123",
    "exa_mple.com",
])
def test_hostile_or_malformed_names_are_refused(name):
    with pytest.raises(ValueError):
        domain_name(name)


def test_names_are_lowered_and_idn_becomes_punycode():
    assert domain_name("Example.COM") == "example.com"
    assert domain_name("bücher.example") == "xn--bcher-kva.example"
    assert domain_name("www.example.com.") == "www.example.com"


@pytest.mark.parametrize("upstream, expected", [
    ("demo-app:8080", "http://demo-app:8080"),
    ("http://10.0.0.5:3000", "http://10.0.0.5:3000"),
    ("https://Backend.internal/api", "https://backend.internal/api"),
])
def test_upstreams_become_urls(upstream, expected):
    assert upstream_url(upstream) == expected


@pytest.mark.parametrize("upstream", [
    "", "demo-app", "demo-app:0", "demo-app:70000", "demo-app:80a", "unix:/var/run/app.sock", "ftp://host:21",
    "demo-app:8080;", "demo app:8080", "http://user:pw@host:80", "http://host:80/?q=1", "http://host:80/{x}",
    "demo-app:8080\nproxy_pass", "$host:80", "http://host:80/path'",
])
def test_bad_upstreams_are_refused(upstream):
    with pytest.raises(ValueError):
        upstream_url(upstream)


def test_plaintext_passwords_are_refused_as_auth():
    with pytest.raises(ValidationError, match="must have a bcrypt hash"):
        Domain(name="example.com", upstream="demo-app:8080", auth={"alice": "hunter2"})


def test_header_overrides_cannot_break_out_of_their_quotes():
    with pytest.raises(ValidationError):
        Domain(name="example.com", upstream="demo-app:8080", headers={"Content-Security-Policy": 'x"; return 200'})
