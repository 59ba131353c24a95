"""Request rate limits: the design's NGINX zones (``limit_req_zone`` in the http context) and what a site
sets in the registry: a zone's name (the design's ``perip`` by default), its own ``RATE[/BURST]``, or
``off``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pydantic import Field

from .base import Model, Size, matching

RATE = r"([1-9][0-9]{0,5})r/([sm])"
OFF = "off"
ZONE_NAME = r"[a-z][a-z0-9_]{0,31}"
Rate = matching(RATE, "must be a request rate such as 10r/s or 30r/m")
ZoneKey = matching(r"\$[a-z_]+", "must be one NGINX variable such as $binary_remote_addr")
ZoneName = matching(ZONE_NAME, "must be the name of a rate-limit zone")
SETTING = f"{OFF}|{ZONE_NAME}|{RATE}(/[0-9]{{1,6}})?"
SETTING_MESSAGE = "must be off, a rate-limit zone's name or RATE[/BURST] such as 50r/s/100 or 600r/m"
# A site's own zone: one per site that sets its own rate, named after the site (zone names of the
# configuration have no dot, so they never meet one of these).
SITE_ZONE_PREFIX = "site."


class RateLimitZone(Model):
    """A ``limit_req_zone`` of the http context."""

    key: ZoneKey = "$binary_remote_addr"
    size: Size = "10m"
    rate: Rate = "10r/s"
    burst: int = Field(20, ge=0)
    # Off: requests past the rate wait their turn (up to ``burst``) instead of being answered at once.
    nodelay: bool = True


def rate_limit_setting(value: object) -> str:
    """A site's ``rate_limit``, checked. YAML 1.1 reads a bare ``off`` as false: that is ``off`` too."""
    if value is False:
        return OFF
    if not isinstance(value, str) or not re.fullmatch(SETTING, value):
        raise ValueError(SETTING_MESSAGE)
    return value


def per_second(rate: str) -> float:
    """Requests per second in an NGINX rate ("10r/s", "600r/m")."""
    number, unit = re.fullmatch(RATE, rate).groups()
    return int(number) / (60 if unit == "m" else 1)


@dataclass(frozen=True)
class RequestLimit:
    """The ``limit_req`` a site's location applies; ``own_zone`` when the site defines the zone itself
    (a ``limit_req_zone`` line in its own vhost file, which conf.d includes in the http context)."""

    zone: str
    rate: str
    burst: int
    nodelay: bool
    own_zone: bool = False

    @property
    def per_second(self) -> float:
        return per_second(self.rate)


def request_limit(setting: str, site: str, zones: dict[str, RateLimitZone]) -> RequestLimit | None:
    """What ``rate_limit: setting`` means for ``site``: None for off; a configured zone's limit; or the
    site's own zone at RATE with BURST (one second's worth of requests, at least 1, when not given).
    An unknown zone name raises LookupError naming the zones there are."""
    if setting == OFF:
        return None
    if re.fullmatch(ZONE_NAME, setting):
        if setting not in zones:
            raise LookupError(f"zones: {', '.join(zones)}")
        zone = zones[setting]
        return RequestLimit(setting, zone.rate, zone.burst, zone.nodelay)
    rate, _, burst = setting.rpartition("/") if setting.count("/") == 2 else (setting, "", "")
    return RequestLimit(SITE_ZONE_PREFIX + site, rate, int(burst) if burst else max(1, math.ceil(per_second(rate))),
                        nodelay=True, own_zone=True)
