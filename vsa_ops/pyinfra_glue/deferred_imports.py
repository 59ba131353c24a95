"""Modules that pyinfra's dependencies import at start-up but a vsa-ops command rarely uses, loaded on
first use instead: every command starts faster, and one that does use them gets the real module.

- ``invoke``: paramiko's SSH config parser imports it (about 40 ms with its vendored YAML) only to
  run ``Match exec`` lines of an ssh_config file.

The standard library's ``importlib.util.LazyLoader`` cannot do this on Python 3.11: an ``import`` of a
module already in ``sys.modules`` reads its ``__spec__``, which makes LazyLoader load it at once. So
the stand-in here holds the module's spec as a plain attribute and loads the real module on the first
other attribute.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED = ("invoke",)


class _Deferred(types.ModuleType):
    """Stands in ``sys.modules`` for a module until one of its attributes is read."""

    def __getattr__(self, attribute: str):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attribute)


def defer() -> None:
    """Put the stand-ins in place (once; a module already imported stays as it is)."""
    for name in DEFERRED:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue  # not installed: the importer gets its usual ImportError
        stand_in = _Deferred(name)
        stand_in.__spec__ = spec
        sys.modules[name] = stand_in
