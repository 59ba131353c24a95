"""Where the bench finds the project and its lab, and where it keeps its own files."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent  # bench/: the helper scripts run as child processes
ROOT = HERE.parent  # the project: every command runs from here
LAB = ROOT / ".lab"  # what `vsa-ops lab up` wrote: inventory.py, domains.yml
STATE = Path("/var/cache/vsa-ops/bench")  # raw results, logs of failed runs, the delay proxy's state
VENV = Path("/var/cache/vsa-ops/bench-venv")  # ansible-core, installed once
