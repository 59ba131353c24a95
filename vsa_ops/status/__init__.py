"""``vsa-ops status``: one screen per host that says whether the hub is healthy. ``host_status.sh``
is the host program (one remote command per host, together with the state read), ``checks`` turns
what it and the controller's probes saw into named checks, ``service`` gathers them per host and
``cli`` prints them."""
