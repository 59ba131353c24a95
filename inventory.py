"""The hosts vsa-ops manages. Each list is a pyinfra group; group_data/<group>.py overrides the
design's defaults for it (see README, "Configure a hub").

The production hub's address comes from $VSA_HUB_ADDRESS so this file names no real server.
"""

import os

hubs = [
    ("hub", {"ssh_hostname": os.environ.get("VSA_HUB_ADDRESS", "hub.example.net"), "ssh_user": "root"}),
]
