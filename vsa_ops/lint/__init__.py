"""Design rules checked on a rendered manifest. Each rule is a small function that yields findings;
errors fail ``vsa-ops lint``, warnings are printed only."""

from . import rules  # noqa: F401  (registers its rules, in the order they report)
from . import observability_rules  # noqa: F401,I001
from .base import RULES, Finding, lint, rule

__all__ = ["RULES", "Finding", "lint", "rule"]
