"""The lab (images, lab hosts, test CA) is a development tool apart from the product: the CLI loads it
only for `vsa-ops lab ...`, its modules import one way, and its image tags are the configured ones."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from vsa_ops.config import hub_config
from vsa_ops.lab.recipes import RECIPES, configured_images, lab_recipes
from tests.conftest import ROOT, run_cli

LAB = ROOT / "vsa_ops" / "lab"


def test_the_cli_loads_no_lab_module_and_no_docker_sdk():
    probe = ("import sys, vsa_ops.cli; "
             "print(sorted(m for m in sys.modules if m.startswith('vsa_ops.lab') or m.split('.')[0] == 'docker'))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_lab_help_lists_its_commands_and_the_main_help_lists_lab(tmp_path):
    lab_help = run_cli("lab", "--help", cwd=tmp_path)
    assert lab_help.returncode == 0, lab_help.stderr
    assert "containers with sshd and Docker" in lab_help.stdout
    for command in ("up", "down", "status", "info"):
        assert f"\n  {command} " in lab_help.stdout
    main_help = run_cli("--help", cwd=tmp_path)
    assert "\n  lab " in main_help.stdout


def _lab_imports(path: Path) -> tuple[set[str], list[str]]:
    """Lab modules ``path`` imports at module level, and any import of ours inside a function."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level != 1:
            continue
        names = [node.module] if node.module else [alias.name for alias in node.names]
        if node in tree.body or any(node in ast.walk(n) for n in tree.body if isinstance(n, ast.If)):
            top.update(name.split(".")[0] for name in names)
        else:
            nested.append(f"{path.name}:{node.lineno}")
    return top, nested


def test_lab_modules_import_one_way():
    graph, nested = {}, []
    for path in LAB.glob("*.py"):
        graph[path.stem], inside = _lab_imports(path)
        nested += inside
    assert not nested, f"imports of lab modules inside functions: {nested}"
    done: set[str] = set()

    def visit(module: str, chain: list[str]) -> None:
        assert module not in chain, f"import cycle: {' -> '.join([*chain, module])}"
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, [*chain, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_lab_images_carry_the_configured_tags():
    configured = configured_images(hub_config([]))
    tags = {recipe.tag for recipe in RECIPES.values()}
    assert configured["reverse-proxy/nginx"] == RECIPES["nginx"].tag == "nginx:1.25-alpine"
    missing = {service: image for service, image in configured.items() if image not in tags}
    assert not missing, f"configured images with no lab image: {missing}"


def test_a_changed_pin_changes_the_lab_tag():
    config = hub_config([{"reverse_proxy": {"nginx": {"container": {"image": "nginx:1.27-alpine"}}},
                          "dashboard": {"postgres": {"container": {"image": "postgres:17"}}}}])
    recipes = lab_recipes(configured_images(config))
    assert recipes["nginx"].tag == "nginx:1.27-alpine"
    assert recipes["postgres"].tag == "postgres:17"
    assert recipes["vps"] == RECIPES["vps"]
