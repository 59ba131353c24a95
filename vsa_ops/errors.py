"""The root of every expected failure: input, configuration or environment that vsa-ops refuses.

The CLI turns exactly these into a one-line message and exit 1. Anything else is a bug and ends
with its traceback, so that it gets reported rather than mistaken for a user's mistake."""


class VsaError(Exception):
    """An expected failure, worded for the person who runs vsa-ops."""


class PlanError(VsaError):
    """A plan vsa-ops refuses to make (it would harm the host), or cannot carry out."""
