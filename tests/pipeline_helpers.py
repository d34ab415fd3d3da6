"""A fresh DVC project with the shipped dvc.yaml, stages and package on a small generated sample,
for the end-to-end tests (tests/test_pipeline_e2e.py, tests/test_dvc_workflow.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from mmrec.data.sample import generate

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd`; with `ok`, assert it succeeded (the message shows its output tail)."""
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if ok:
        assert res.returncode == 0, (f"{' '.join(cmd)} failed ({res.returncode}):\n"
                                     f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def dvc(project: Path, env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    """`dvc <args>` with the interpreter running the tests."""
    return sh([sys.executable, "-m", "dvc", *args], project, env, ok)


def stale_stages(project: Path, env: dict[str, str]) -> set[str]:
    """Stage names (with their @item) `dvc status --json` reports as changed."""
    return set(json.loads(dvc(project, env, "status", "--json").stdout or "{}"))


def ran_stages(repro_output: str) -> set[str]:
    """Stages a `dvc repro` / `dvc exp run` output says it ran (not restored, not skipped)."""
    return {line.split("'")[1] for line in repro_output.splitlines() if line.startswith("Running stage '")}


def make_project(proj: Path, models: list[str], epochs: int = 2, n_items: int = 300,
                 n_users: int = 400) -> dict[str, str]:
    """Copy the shipped pipeline into `proj`, generate the sample, cut epochs, keep `models`
    (in params.yaml and dvc.yaml), `git init` + `dvc init`; returns the environment to run in."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("stages", "mmrec"):
        shutil.copytree(ROOT / d, proj / d, ignore=ignore)
    shutil.copy(ROOT / ".gitignore", proj / ".gitignore")
    generate(proj / "data" / "raw" / "sample", n_items=n_items, n_users=n_users)

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["models"] = models
    # The sample's profile is what applies while data.name is `sample`: cut its epochs there.
    profile = params["profiles"]["sample"]
    profile["train"]["common"].update(epochs=epochs, patience=1)
    for m in ("odmt", "odmt_kdsr"):
        profile["train"][m].update(epochs=epochs, rampup_epochs=1)
    profile["teacher"]["epochs"] = 3
    params["teacher"].update(random_pairs=5000, max_cooccurring_pairs=20000, kmeans_iters=5)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    reads = pipeline["vars"][0]["reads"]
    pipeline["vars"][0]["reads"] = {m: reads[m] for m in models}
    loss = pipeline["plots"][0]["loss"]["y"]
    pipeline["plots"][0]["loss"]["y"] = {f: c for f, c in loss.items() if f.split("/")[-2] in models}
    (proj / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))

    # the stage commands say `python`: the interpreter running the tests, with its packages; and
    # the copied mmrec first on the path (an editable install elsewhere must not stand in for it)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(proj),
           "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    sh(["git", "init", "-q"], proj, env)
    dvc(proj, env, "init", "-q")
    return env


def copy_project(proj: Path) -> dict[str, str]:
    """The shipped project as a fresh clone has it (dvc.yaml, params.yaml, dvc.lock, metrics/,
    stages, package, embedded sample), in `proj` with an empty DVC cache; returns the
    environment to run in. Nothing is changed: a `dvc repro` there is the user's first run."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("stages", "mmrec", "metrics", "data/raw/sample"):
        shutil.copytree(ROOT / d, proj / d, ignore=ignore)
    for f in ("dvc.yaml", "dvc.lock", "params.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / f, proj / f)
    shutil.copytree(ROOT / ".dvc", proj / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(proj), "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    sh(["git", "init", "-q"], proj, env)
    return env
