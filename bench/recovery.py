"""Recovery time (issue 13): runs the disaster-recovery drill on the lab and prints how long a
destroyed lab host took to serve every domain again (fresh host up, deploy without sites, restore,
deploy with them). The drill writes the figure to .lab/recovery-time.json.

    flock /tmp/vsa-lab.lock python3 bench/recovery.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / ".lab" / "recovery-time.json"


def main() -> int:
    RESULT.unlink(missing_ok=True)
    drill = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                            "tests/lab/test_disaster_recovery.py"], cwd=ROOT)
    if drill.returncode or not RESULT.exists():
        print("recovery: the drill failed; no figure", file=sys.stderr)
        return 1
    seconds = json.loads(RESULT.read_text())["recovery_seconds"]
    print(f"recovery time (fresh lab host up to every domain serving): {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
