"""The hosts vsa-ops manages. Each list is a pyinfra group; group_data/<group>.py overrides the
design's defaults for it (see README, "Configure a hub").

The production hub's address comes from $VSA_HUB_ADDRESS so this file names no real server.
"""

import os

hubs = [
    # $VSA_SSH_USER: the CI plan logs in as the plan identity (vsa-plan). Host keys are checked,
    # never accepted unseen: put the hub's in ~/.ssh/known_hosts first.
    ("hub", {"ssh_hostname": os.environ.get("VSA_HUB_ADDRESS", "hub.example.net"),
             "ssh_user": os.environ.get("VSA_SSH_USER", "root"), "ssh_strict_host_key_checking": "yes"}),
]
