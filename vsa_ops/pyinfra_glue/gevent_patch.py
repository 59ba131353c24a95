"""gevent's monkey patching, as pyinfra's own CLI does it, without its start-up cost.

pyinfra runs each host in a gevent greenlet, so the standard library must be patched before any
socket opens. ``monkey.patch_all()`` asks ``importlib.metadata`` for gevent plugin entry points
about 25 times, and each time reads the metadata of every installed distribution: 0.2 s of every
vsa-ops command. Here that scan is done once and the plugins are still found and called.
"""

from __future__ import annotations

from importlib import metadata


def patch() -> None:
    """Patch the standard library for gevent (once; later calls do nothing)."""
    from gevent import monkey

    if monkey.is_module_patched("socket"):
        return
    everything = metadata.entry_points()
    scan = metadata.entry_points
    metadata.entry_points = lambda **selection: everything.select(**selection) if selection else everything
    try:
        monkey.patch_all()
    finally:
        metadata.entry_points = scan
    from gevent.hub import Hub

    # Ctrl-C still goes to the main greenlet (a SYSTEM_ERROR), without a greenlet's crash report first
    Hub.NOT_ERROR = (*Hub.NOT_ERROR, KeyboardInterrupt)
