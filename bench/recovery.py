"""Recovery time (issue 13): runs the disaster-recovery drill on the lab and reports how long a
destroyed lab host took to serve every domain again (fresh host up, `deploy --defer-certificates`,
`restore`). The drill writes the figure to .lab/recovery-time.json.

    python3 bench/run.py --only recovery                # a row of the bench's report
    flock /tmp/vsa-lab.lock python3 bench/recovery.py   # on its own: prints the figure
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench's modules, also when run alone
from measure import Sample  # noqa: E402
from paths import ROOT  # noqa: E402
from progress import log  # noqa: E402

RESULT = ROOT / ".lab" / "recovery-time.json"
LABEL = "disaster recovery: fresh lab host up to every domain serving (deploy --defer-certificates, restore)"


def drill() -> float | None:
    """The drill's recovery time in seconds; None when the drill failed."""
    RESULT.unlink(missing_ok=True)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "tests/lab/test_disaster_recovery.py"], cwd=ROOT, stdout=sys.stderr)  # stdout: the report
    if run.returncode or not RESULT.exists():
        return None
    return float(json.loads(RESULT.read_text())["recovery_seconds"])


def recovery(bench) -> None:
    """The bench group: one run of the drill (it recreates the lab host it destroys), one row."""
    seconds = drill()
    row = bench.row("recovery", "recovery", LABEL)
    row.samples["lo"].append(Sample(seconds or 0.0, seconds is not None, note="" if seconds else "the drill failed"))
    log(f"  recovery time: {f'{seconds:.0f} s' if seconds is not None else 'none (the drill failed)'}")


def main() -> int:
    seconds = drill()
    if seconds is None:
        print("recovery: the drill failed; no figure", file=sys.stderr)
        return 1
    print(f"recovery time (fresh lab host up to every domain serving): {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
