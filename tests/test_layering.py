"""The import graph runs one way (see mmrec/__init__.py): checked by walking every module's AST,
function-level imports included, so a lazy import cannot hide a wrong-way dependency."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mmrec"

# The floors, bottom up. A package imports its own modules and packages on LOWER floors only: two
# packages on one floor never import each other, so the floor count is the tower's real height.
# Only the ground floor's single-file utilities may use each other (io writes through atomic).
FLOORS: list[set[str]] = [
    {"atomic", "entry", "io", "hashing", "paths", "rawparams", "registry", "schema", "threads"},
    {"data", "metrics"},
    {"features", "teacher"},
    {"objectives"},
    {"models"},
    {"train", "evaluate", "serving"},
    {"report", "config"},
    {"cli"},
]
LAYERS = {unit: floor for floor, units in enumerate(FLOORS) for unit in units}
MAX_FLOORS = 8


def _unit(module: str) -> str:
    """`mmrec.models.kdsr` -> `models`; `mmrec.paths` -> `paths`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _mmrec_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every `mmrec.*` import anywhere in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("mmrec.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mmrec":
                found += [(node.lineno, f"mmrec.{a.name}") for a in node.names]
            elif node.module.startswith("mmrec."):
                found.append((node.lineno, node.module))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_has_a_layer() -> None:
    units = {_unit("mmrec." + ".".join(p.relative_to(PKG).with_suffix("").parts)) for p in _modules()}
    units.discard("__init__")
    assert units <= set(LAYERS), f"add these to LAYERS: {sorted(units - set(LAYERS))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_run_one_way(path: Path) -> None:
    me = _unit("mmrec." + ".".join(path.relative_to(PKG).with_suffix("").parts))
    if me == "__init__":
        return
    wrong = [f"line {line}: {mod}" for line, mod in _mmrec_imports(path)
             if _unit(mod) != me and LAYERS.get(_unit(mod), -1) >= max(LAYERS[me], 1)]
    assert not wrong, f"mmrec/{path.relative_to(PKG)} ({me}) imports its own floor or a higher one: {wrong}"


def test_the_tower_is_short() -> None:
    """At most 8 floors, with the metric math beneath both model selection and evaluation."""
    assert len(FLOORS) <= MAX_FLOORS
    assert LAYERS["metrics"] < min(LAYERS["train"], LAYERS["evaluate"])


@pytest.mark.parametrize("unit, forbidden", [
    ("models", {"train", "evaluate", "config", "serving", "report"}),
    ("evaluate", {"train", "config", "serving", "report"}),
    ("train", {"evaluate", "serving", "report", "config"}),
    ("metrics", {"data", "features", "teacher", "objectives", "models", "train", "evaluate", "config"}),
    ("serving", {"train", "evaluate", "report", "config"}),
    ("data", {"config", "models", "train", "evaluate"}),
    ("features", {"config", "models", "train", "evaluate"}),
    ("teacher", {"config", "models", "train", "evaluate"}),
    ("objectives", {"models", "train", "evaluate", "config"}),
])
def test_named_rules(unit: str, forbidden: set[str]) -> None:
    """The rules as the layering issue states them, independent of the LAYERS numbering."""
    bad = [f"{p.relative_to(PKG)}:{line} {mod}" for p in (PKG / unit).rglob("*.py")
           for line, mod in _mmrec_imports(p) if _unit(mod) in forbidden]
    assert not bad, bad


def test_config_is_imported_only_by_entry_points() -> None:
    users = [str(p.relative_to(PKG)) for p in _modules()
             if any(_unit(m) == "config" for _, m in _mmrec_imports(p))]
    assert set(users) <= {"cli.py"}, users
