"""Converge every host of the inventory to its manifest:

    pyinfra inventory.py deploy.py        # review, then confirm
    pyinfra -y inventory.py deploy.py     # apply
    vsa-ops deploy [-i INVENTORY] [--limit HOST]   # the same, with the run lock and a summary
"""

from vsa_ops.deploys.hub import converge_hub

converge_hub()
