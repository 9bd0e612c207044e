"""The package's shape, checked: layers, module and notebook-cell sizes, one home per fact.

These are the redesign's rules (README, "Layout"); each test names what broke the rule.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "disclatent"

# data flows one way: a module may import its own layer and the layers before it
LAYERS = [
    {"published", "conventions", "paths", "formatting", "stats", "profiles", "accel", "parallel"},
    {"data"},
    {"discs"},
    {"segmentation", "autoencoder"},
    {"analysis"},
    {"report"},
    {"app"},
    {"cli", "__main__"},
]
MAX_MODULE_LINES = 500
MAX_CELL_LINES = 15


def _layer(part: str) -> int:
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise KeyError(part)


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if p.name != "__init__.py" or p.parent != PKG)


def _own_part(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    return rel.parts[0]


def _imported_parts(path: Path) -> set[str]:
    """First component under ``disclatent.`` of every import in the file (functions too)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}: relative import; use absolute imports")
            names = node.module.split(".")
            if names[0] == "disclatent":
                if len(names) > 1:
                    parts.add(names[1])
                else:  # from disclatent import x, y
                    parts.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "disclatent" and len(names) > 1:
                    parts.add(names[1])
    return parts


def test_every_module_belongs_to_a_layer():
    unknown = {_own_part(p) for p in _modules()} - set().union(*LAYERS)
    assert not unknown, f"modules outside the layer map in tests/test_layout.py: {unknown}"


def test_no_lower_layer_imports_a_higher_one():
    upward = []
    for path in _modules():
        own = _layer(_own_part(path))
        for part in _imported_parts(path) - {"__version__"}:
            if _layer(part) > own:
                upward.append(f"{path.relative_to(PKG)} imports disclatent.{part}")
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from disclatent.report.plots import forest_plot\n")
    assert "report" in _imported_parts(bad)


def test_modules_are_short():
    long = {
        str(p.relative_to(PKG)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules longer than {MAX_MODULE_LINES} lines: {long}"


def _code_cells(path: Path) -> list[tuple[int, int]]:
    nb = jupytext.read(path)
    return [
        (i, len(c.source.splitlines())) for i, c in enumerate(nb.cells) if c.cell_type == "code"
    ]


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")))
def test_notebook_code_cells_are_short(notebook):
    long = [(i, n) for i, n in _code_cells(notebook) if n > MAX_CELL_LINES]
    assert not long, f"{notebook.name}: (cell, lines) above {MAX_CELL_LINES}: {long}"


def test_every_notebook_has_one_parameters_cell_first():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        code = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
        tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
        assert tagged == [0], f"{path.name}: parameters cell at code cells {tagged}"


# figures the paper reports that a careless copy would type again; each must live in
# disclatent/published.py only
PUBLISHED_FIGURES = ["0.9984", "0.9981", "0.9983", "0.9979", "0.9989", "0.82", "0.90", "0.74"]


@pytest.mark.parametrize("figure", PUBLISHED_FIGURES)
def test_published_figures_have_one_home(figure):
    pattern = re.compile(rf"(?<![\d.]){re.escape(figure)}(?!\d)")
    homes = []
    for path in [*PKG.rglob("*.py"), *(ROOT / "notebooks").glob("*.py")]:
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        if pattern.search(code):
            homes.append(str(path.relative_to(ROOT)))
    assert homes == ["src/disclatent/published.py"], f"{figure} typed in {homes}"
