"""The layers of vsa_ops and what may import what (docs/architecture.md). Data flows one way:
configuration, then render, then converge, then verify; no module imports a layer above its own,
and the pure layers never import pyinfra, gevent or click."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vsa_ops"

# Lowest first. A module belongs to the layer of the longest prefix it starts with (vsa_ops.audit.cli is cli).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("vsa_ops.errors", "vsa_ops.yamlio")),
    ("config", ("vsa_ops.config",)),
    ("model", ("vsa_ops.domains", "vsa_ops.htpasswd", "vsa_ops.project", "vsa_ops.manifest", "vsa_ops.state_read",
               "vsa_ops.plan", "vsa_ops.plan_identity", "vsa_ops.fstab_plan", "vsa_ops.inventory", "vsa_ops.probe",
               "vsa_ops.deploys.request",
               "vsa_ops.preflight.host_facts", "vsa_ops.preflight.checks", "vsa_ops.preflight.controller_checks",
               "vsa_ops.host_programs", "vsa_ops.shipper_positions")),
    ("render", ("vsa_ops.render", "vsa_ops.metrics", "vsa_ops.lint", "vsa_ops.plan_report", "vsa_ops.writer")),
    ("assembly", ("vsa_ops.host_manifest",)),
    ("converge", ("vsa_ops.facts", "vsa_ops.operations", "vsa_ops.planning", "vsa_ops.deploys")),
    ("pyinfra_glue", ("vsa_ops.pyinfra_glue",)),
    ("services", ("vsa_ops.audit", "vsa_ops.recording", "vsa_ops.fact_publishing", "vsa_ops.domain_changes",
                  "vsa_ops.listings", "vsa_ops.plan_review", "vsa_ops.preflight", "vsa_ops.backup", "vsa_ops.status")),
    ("cli", ("vsa_ops.cli", "vsa_ops.cli_support", "vsa_ops.audit.cli", "vsa_ops.preflight.cli", "vsa_ops.backup.cli",
             "vsa_ops.status.cli", "vsa_ops.domains_cli")),
]
PURE = {"base", "config", "model", "render", "assembly"}
FRAMEWORKS = ("pyinfra", "pyinfra_cli", "gevent", "click", "paramiko")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (imports inside functions count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def layer_of(module: str) -> int | None:
    matches = [(len(p), index) for index, (_, prefixes) in enumerate(LAYERS) for p in prefixes
               if module == p or module.startswith(p + ".")]
    return max(matches)[1] if matches else None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "lab" not in p.relative_to(PACKAGE).parts)


def test_every_module_has_a_layer():
    assert [module_name(p) for p in MODULES if module_name(p) != "vsa_ops" and layer_of(module_name(p)) is None] == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_imports_a_layer_above_its_own(path):
    own = layer_of(module_name(path))
    if own is None:
        return  # the package itself
    upward = sorted(m for m in imports(path) if (layer_of(m) or 0) > own)
    assert not upward, f"{module_name(path)} ({LAYERS[own][0]}) imports upward: {upward}"


@pytest.mark.parametrize("path", [p for p in MODULES if LAYERS[layer_of(module_name(p)) or 0][0] in PURE],
                         ids=lambda p: module_name(p))
def test_pure_layers_import_no_framework(path):
    used = sorted(m for m in imports(path) if m.split(".")[0] in FRAMEWORKS)
    assert not used, f"{module_name(path)} is pure but imports {used}"


def test_the_product_never_imports_the_lab():
    for path in MODULES:
        lab = sorted(m for m in imports(path) if m == "vsa_ops.lab" or m.startswith("vsa_ops.lab."))
        if module_name(path) == "vsa_ops.cli":
            continue  # `vsa-ops lab ...` loads it when asked (checked by its own test)
        assert not lab, f"{module_name(path)} imports the lab: {lab}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_module_is_over_about_300_lines(path):
    assert len(path.read_text().splitlines()) <= 320, f"{module_name(path)} is too long; split it by concern"
