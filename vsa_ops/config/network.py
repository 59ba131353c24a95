"""Docker networks: the design's "Network Topology"."""

from __future__ import annotations

from .base import Model


class Network(Model):
    """A Docker bridge network.

    ``shared`` networks (flowbiz_ext) are created once on the host and joined by every stack;
    the others belong to one stack. ``members`` lists the containers the design puts on an isolated
    network; lint fails when any other container joins it.
    """

    internal: bool = False
    shared: bool = False
    members: list[str] | None = None


# Design, "Network Topology". Isolated bridges are Docker "internal" networks (no route out).
DEFAULT_NETWORKS = {
    "flowbiz_ext": Network(shared=True),
    "observability_internal": Network(
        internal=True, members=["loki", "grafana", "promtail", "prometheus", "node-exporter", "cadvisor",
                                     "alloy"]),  # Alloy succeeds Promtail (EOL 2026-03-02)
    "dashboard-net": Network(internal=True, members=["dashboard-api", "dashboard-ui", "dashboard-postgres"]),
    "dify-net": Network(internal=True, members=[
        "dify-api", "dify-web", "dify-worker", "dify-sandbox", "dify-postgres", "dify-redis"]),
}
