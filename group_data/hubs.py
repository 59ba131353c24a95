"""Settings for the hubs group (inventory.py). The design's values are the defaults; this file only
names what differs for the hubs."""

vsa = {
    "observability": {"prometheus": {"external_url": "https://prometheus.flowbiz.ai"}},
}
