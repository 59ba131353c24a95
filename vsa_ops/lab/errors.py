"""The lab's expected failures (both are VsaErrors: the CLI shows them as one line)."""

from __future__ import annotations

from ..errors import VsaError


class LabError(VsaError):
    """A lab host, the lab's network or its ACME test CA could not be set up or reached."""


class BuildError(VsaError):
    """A build step failed; the message holds the command and the end of its output."""
