"""The inventory file, loaded by pyinfra's own CLI code (group_data/ included)."""

from __future__ import annotations

from pathlib import Path

from ..inventory import InventoryError


def load_inventory(path: Path, project_root: Path):
    """The pyinfra inventory, with group_data/ from the project and from beside the inventory."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory_from_files  # patches gevent: import only when needed

    # pyinfra executes inventory and group_data files with a state in context.
    with ctx_state.use(State()):
        inventory = make_inventory_from_files(str(path), cwd=str(project_root))
    if not list(inventory):
        raise InventoryError(f"inventory: {str(path)!r} defines no hosts")
    return inventory
