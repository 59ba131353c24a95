"""README's fault table: each row names the tests that show it. A renamed or deleted test must not
leave a row promising what nothing checks any more."""

import re

from tests.conftest import ROOT


def fault_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("| fault | what vsa-ops does | the test that shows it |", 1)[1].split("\n\n", 1)[0]
    return [line for line in table.splitlines()[2:] if line.startswith("|")]


def test_every_test_the_fault_table_names_exists():
    defined = {name for path in (ROOT / "tests").rglob("test_*.py")
               for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    files = {str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("*.py")}
    rows = fault_rows()
    assert len(rows) > 20
    for row in rows:
        shown = row.rstrip(" |").rsplit(" | ", 1)[1]
        names = re.findall(r"(?<![./\w])(test_\w+)", shown)
        paths = re.findall(r"(tests/[\w/]+\.py)", shown)
        assert names or paths, row
        assert not set(names) - defined, (set(names) - defined, row)
        assert not set(paths) - files, (set(paths) - files, row)
