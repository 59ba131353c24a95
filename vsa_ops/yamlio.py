"""YAML through libyaml when PyYAML has it: the C loader and dumper are 5-10x faster than the pure
Python ones, and render parses and dumps every compose file."""

from __future__ import annotations

from typing import Any

import yaml

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
YAMLError = yaml.YAMLError


def load(text: str) -> Any:
    return yaml.load(text, Loader=Loader)


def dump(data: Any, **options) -> str:
    return yaml.dump(data, Dumper=Dumper, **options)
