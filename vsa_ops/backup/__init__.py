"""Backups and restore (issue 13): the backup stack's program run on the hosts over SSH, one command
per host (``hosts``), and the click commands (``cli``)."""
