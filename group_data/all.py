"""Settings for every host. Everything vsa-ops reads lives under ``vsa``; each key overrides the
design's default of the same path (vsa_ops/config/). Tables merge key by key with the defaults and
with group and host settings; lists are replaced whole.

Example: keep Prometheus data for 30 days on every host:

    vsa = {"observability": {"prometheus": {"retention_time": "30d"}}}
"""

vsa = {}
