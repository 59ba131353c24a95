"""One constrained string type (config.base.matching) checks the regex-shaped fields of the log shipper,
the reverse proxy and the domain registry; each field keeps its own error text, pinned here."""

import pytest
from pydantic import BaseModel, ValidationError

from vsa_ops.config.base import matching
from vsa_ops.config.log_shipping import ShipLabel
from vsa_ops.config.rate_limits import RateLimitZone
from vsa_ops.config.reverse_proxy import Certbot, Nginx
from vsa_ops.domains import Domain


def message(model, **values) -> str:
    with pytest.raises(ValidationError) as caught:
        model(**values)
    item = caught.value.errors()[0]
    return f"{'.'.join(map(str, item['loc']))}: {item['msg'].removeprefix('Value error, ')}"


@pytest.mark.parametrize("model, values, expected", [
    (ShipLabel, {"name": "bad-name", "field": "ok"}, "name: must be letters, digits and _ (a Loki label name or a "
                                                      "field name)"),
    (ShipLabel, {"name": "ok", "field": "1st"}, "field: must be letters, digits and _ (a Loki label name or a "
                                                 "field name)"),
    (RateLimitZone, {"rate": "10r/h"}, "rate: must be a request rate such as 10r/s or 30r/m"),
    (RateLimitZone, {"rate": "0r/s"}, "rate: must be a request rate such as 10r/s or 30r/m"),
    (RateLimitZone, {"key": "$binary_remote_addr; evil"}, "key: must be one NGINX variable such as "
                                                          "$binary_remote_addr"),
    (Certbot, {"acme_server": "http://acme.example"}, "acme_server: must be an https:// ACME directory URL"),
    (Certbot, {"email": "root"}, "email: must be an e-mail address"),
    (Nginx, {"login_zone": "Login"}, "login_zone: must be the name of a rate-limit zone"),
    (Nginx, {"rate_limit_zones": {"per ip": {}}}, "rate_limit_zones.per ip.[key]: must be the name of a rate-limit "
                                                   "zone"),
    (Domain, {"name": "a.example.com", "upstream": "app:80", "rate_limit": "10r/s/5 nodelay"},
     "rate_limit: must be off, a rate-limit zone's name or RATE[/BURST] such as 50r/s/100 or 600r/m"),
])
def test_each_field_keeps_its_own_error_text(model, values, expected):
    assert message(model, **values) == expected


def test_valid_values_pass_unchanged():
    assert ShipLabel(name="domain", field="domain").field == "domain"
    assert Certbot(email="ops@example.com", acme_server="https://acme.example:14000/dir").email == "ops@example.com"
    assert Certbot().email is None  # optional fields stay optional


def test_the_whole_value_must_match():
    class Sample(BaseModel):
        word: matching(r"[a-z]+", "must be a word")

    assert Sample(word="abc").word == "abc"
    for value in ("abc!", "!abc", "ab c"):
        with pytest.raises(ValidationError, match="must be a word"):
            Sample(word=value)
