"""``vsa-ops preflight``: whether each host is ready for its first deploy, read-only. The checks are
pure functions (checks, controller_checks) over facts read in one command per host (host_read.sh,
parsed by host_facts); run.py gathers them; cli.py prints them."""
