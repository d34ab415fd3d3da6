"""dvc.yaml's code dependencies are derived from the code: every module a stage script can import
(statically, at any depth, and the models the registry loads by name) is a dependency of that
stage in dvc.yaml, so a change to code that shapes a stage's outputs re-runs it."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Modules whose only effect on a stage is the parameter values they validate and resolve: the
#: `params` stage depends on them and writes those values to data/<name>/params.yaml, which
#: every other stage tracks key by key (so a changed default re-runs what it changes).
SCHEMA = {"mmrec/config.py", "mmrec/rawparams.py", "mmrec/schema.py", "mmrec/data/params.py", "mmrec/evaluate/params.py",
          "mmrec/metrics/params.py", "mmrec/serving/params.py", "mmrec/features/params.py",
          "mmrec/teacher/params.py", "mmrec/train/params.py", "mmrec/train/entries.py",
          "mmrec/models/configs.py"}
#: Process set-up that never changes what a stage computes: thread pool sizes (deliberately not
#: a dependency, README "CPU threads") and the error/lock wrapper every stage runs in.
NOT_SHAPING = {"mmrec/entry.py", "mmrec/threads.py", "mmrec/__init__.py"}


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def _imported(path: Path, package: str) -> set[str]:
    """Every mmrec module `path` imports, at module level or inside functions, plus the literal
    names it hands to importlib.import_module, the model modules the registry loads and the
    plug-in modules a registry discovers with pkgutil."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            mod = (".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                   if node.level else node.module or "")
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}     # `from pkg import module`
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)):
            out.add(node.args[0].value)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "iter_modules":
            # a registry that discovers its plug-ins (mmrec/data/sources): every module beside it
            here = package if path.name == "__init__.py" else package.rsplit(".", 1)[0]
            out |= {f"{here}.{p.stem}" for p in path.parent.glob("*.py") if p.name != "__init__.py"}
    if path == ROOT / "mmrec/models/registry.py":
        from mmrec.models.registry import _MODEL_MODULES

        out |= {f"mmrec.models.{m}" for m in _MODEL_MODULES}
    return {m for m in out if isinstance(m, str) and m.split(".")[0] == "mmrec"}


@cache
def closure(script: str) -> frozenset[str]:
    """Project files (relative paths) that running stages/<script> can execute, minus SCHEMA and
    NOT_SHAPING (whose imports are not followed either)."""
    seen: set[str] = set()
    todo = sorted(_imported(ROOT / "stages" / script, "stages"))
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]     # parent packages run too
        path = _module_file(mod)
        if path is None:
            continue
        rel = str(path.relative_to(ROOT))
        if rel in seen:
            continue
        seen.add(rel)
        if rel in SCHEMA or rel in NOT_SHAPING:
            continue
        pkg = mod if path.name == "__init__.py" else ".".join(parts[:-1])
        todo += sorted(_imported(path, pkg))
    return frozenset(seen - SCHEMA - NOT_SHAPING)


@cache
def _stages() -> dict:
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.addressing: s for s in repo.index.stages}


def _script(stage) -> str:
    return stage.cmd.split()[1].removeprefix("stages/")


def _covered(path: str, deps: set[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_depends_on_the_code_it_can_run():
    stages = _stages()
    assert len(stages) > 10
    missing = {}
    for name, stage in stages.items():
        deps = {d.def_path for d in stage.deps}
        script = _script(stage)
        assert f"stages/{script}" in deps, name
        files = closure(script) | (SCHEMA if script == "params.py" else set())
        lacking = sorted(f for f in files if not _covered(f, deps))
        if lacking:
            missing[name] = lacking
    assert not missing, f"dvc.yaml misses code dependencies: {missing}"


def test_closure_follows_lazy_imports_and_the_model_registry():
    train = closure("train.py")
    assert "mmrec/models/odmt.py" in train          # loaded by name through the registry
    assert "mmrec/objectives/distill.py" in train   # imported by a model module
    assert "mmrec/train/loop.py" in train           # imported inside stage functions
    assert not any(f.startswith("mmrec/features/encoders") for f in train)
    assert "mmrec/config.py" not in closure("ingest.py")
    assert "mmrec/data/sources/table.py" in closure("ingest.py")  # discovered, never imported by name


@pytest.mark.parametrize("stage", ["params", "ingest", "extract@image", "teacher@text", "train@kdsr",
                                   "evaluate@odmt", "recommend@sasrec", "report"])
def test_every_stage_but_params_reads_params_from_the_resolved_file(stage):
    """The params stage validates params.yaml; the others track the values it resolved, so
    `dvc repro <stage>` always runs (and validates) it first."""
    st = _stages()[stage]
    files = {d.def_path for d in st.deps if hasattr(d, "params")}
    assert files == ({"params.yaml"} if stage == "params" else {"data/sample/params.yaml"}), files
