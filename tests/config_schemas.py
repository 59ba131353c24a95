"""Check rendered configuration files against the options each pinned program version accepts
(tests/schemas/*.yml, each naming the repository, tag and path it was taken from). A problem is a line
naming the dotted key, as the program's own start-up error would."""

from __future__ import annotations

import datetime
import re
from functools import cache
from pathlib import Path

import yaml

SCHEMAS = Path(__file__).parent / "schemas"
DURATION = re.compile(r"^(0|(\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d|w|y))+)$")


@cache
def schema(name: str) -> dict:
    return yaml.safe_load((SCHEMAS / name).read_text())


def _type_problem(value, kind: str) -> str | None:
    ok = {
        "string": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "duration": lambda v: (isinstance(v, str) and DURATION.match(v)) or v == 0,
        "daytime": lambda v: isinstance(v, datetime.date) or (isinstance(v, str) and re.fullmatch(r"\d{4}-\d\d-\d\d", v)),
        "list_of_strings": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
        "map": lambda v: isinstance(v, dict),
        "any": lambda v: True,
    }[kind](value)
    return None if ok else f"expected {kind}, got {value!r}"


def check_yaml(document, described: dict) -> list[str]:
    """Problems of a parsed YAML document against a schema of blocks (tests/schemas/loki-3.0.0.yml)."""
    blocks = described["blocks"]
    problems: list[str] = []

    def node(value, spec, path):
        if isinstance(spec, str):
            problem = _type_problem(value, spec)
            if problem:
                problems.append(f"{path}: {problem}")
        elif "block" in spec:
            table(value, blocks[spec["block"]], path)
        elif "keys" in spec:
            table(value, spec["keys"], path)
        elif "list" in spec:
            if not isinstance(value, list):
                problems.append(f"{path}: expected a list, got {value!r}")
                return
            for index, item in enumerate(value):
                node(item, spec["list"], f"{path}[{index}]")

    def table(value, keys, path):
        if value is None:
            return
        if not isinstance(value, dict):
            problems.append(f"{path or '(top)'}: expected a table, got {value!r}")
            return
        if keys.get("one_of") and len(value) != 1:
            problems.append(f"{path}: must hold exactly one key, got {sorted(value)}")
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in keys or key == "one_of":
                problems.append(f"{where}: unknown key")
            else:
                node(item, keys[key], where)

    table(document, blocks[described["root"]], "")
    return problems


# Alloy's configuration syntax: blocks `name "label" { ... }`, attributes `name = expression`.
_TOKEN = re.compile(r'[ \t\r]*(?:(//[^\n]*)|("(?:\\.|[^"\\])*")|([A-Za-z_][A-Za-z0-9_.]*)|(\n)|(\S))')


def parse_alloy(text: str) -> list[dict]:
    """The top-level blocks of an Alloy file: {name, label, attributes: {name: references}, blocks: [...]}.
    An attribute's value is kept as the dotted identifiers it references."""
    tokens = []
    for match in _TOKEN.finditer(text):
        comment, string, ident, newline, other = match.groups()
        if comment:
            continue
        tokens.append(("str", string) if string else ("id", ident) if ident else ("nl", "\n") if newline
                      else ("op", other) if other else None)
    tokens = [t for t in tokens if t]
    position = 0

    def skip_newlines():
        nonlocal position
        while position < len(tokens) and tokens[position][0] == "nl":
            position += 1

    def body(closing: bool) -> tuple[dict, list]:
        nonlocal position
        attributes, blocks = {}, []
        while True:
            skip_newlines()
            if position >= len(tokens):
                if closing:
                    raise ValueError("unexpected end of file: a block is not closed")
                return attributes, blocks
            kind, value = tokens[position]
            if closing and (kind, value) == ("op", "}"):
                position += 1
                return attributes, blocks
            if kind != "id":
                raise ValueError(f"expected a name, got {value!r}")
            position += 1
            nxt = tokens[position] if position < len(tokens) else ("nl", "")
            if nxt == ("op", "="):
                position += 1
                attributes[value] = expression()
                continue
            label = None
            if nxt[0] == "str":
                label = nxt[1][1:-1]
                position += 1
            if tokens[position] != ("op", "{"):
                raise ValueError(f"{value}: expected '=' or a block")
            position += 1
            inner_attributes, inner_blocks = body(True)
            blocks.append({"name": value, "label": label, "attributes": inner_attributes, "blocks": inner_blocks})

    def expression() -> list[str]:
        nonlocal position
        depth, references = 0, []
        while position < len(tokens):
            kind, value = tokens[position]
            if depth == 0 and (kind == "nl" or (kind, value) == ("op", "}")):
                break
            if kind == "op" and value in "[{(":
                depth += 1
            elif kind == "op" and value in "]})":
                depth -= 1
            elif kind == "id" and "." in value:
                references.append(value)
            position += 1
        return references

    return body(False)[1]


def check_alloy(text: str, described: dict) -> list[str]:
    try:
        blocks = parse_alloy(text)
    except ValueError as error:
        return [f"syntax: {error}"]
    components = described["components"]
    problems: list[str] = []
    declared = {f"{b['name']}.{b['label']}": b["name"] for b in blocks}

    def check(block, spec, path):
        allowed = {a.rstrip("!") for a in spec.get("attributes", [])}
        for required in (a[:-1] for a in spec.get("attributes", []) if a.endswith("!")):
            if required not in block["attributes"]:
                problems.append(f"{path}: missing required attribute {required}")
        for name, references in block["attributes"].items():
            if name not in allowed:
                problems.append(f"{path}.{name}: unknown attribute")
            for reference in references:
                component, _, export = reference.rpartition(".")
                if component not in declared:
                    problems.append(f"{path}.{name}: {reference} names no component of this file")
                elif export not in components[declared[component]]["exports"]:
                    problems.append(f"{path}.{name}: {declared[component]} exports no {export}")
        for inner in block["blocks"]:
            inner_spec = spec.get("blocks", {}).get(inner["name"])
            if inner_spec is None:
                problems.append(f"{path}.{inner['name']}: unknown block")
            elif inner_spec != "any":
                check(inner, inner_spec, f"{path}.{inner['name']}")

    for block in blocks:
        spec = components.get(block["name"])
        path = f'{block["name"]} "{block["label"]}"'
        if spec is None:
            problems.append(f"{path}: unknown component")
        elif block["label"] is None:
            problems.append(f"{block['name']}: a component needs a label")
        else:
            check(block, spec, path)
    return problems


def check_flags(arguments: list[str], described: dict) -> list[str]:
    known = set(described["flags"])
    problems = []
    for argument in arguments:
        name = re.match(r"^--?([^=]+)", argument)
        if not name:
            problems.append(f"{argument}: not a flag")
        elif name.group(1) not in known:
            problems.append(f"{argument}: unknown flag -{name.group(1)}")
    return problems
