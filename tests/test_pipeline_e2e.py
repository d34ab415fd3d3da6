"""End to end: `dvc repro` of the real dvc.yaml on a small generated sample, in a fresh project.

What a user does after cloning: run the pipeline, open the outputs, re-run (nothing to do), swap
an encoder (exactly the stages downstream of it are stale). Epochs are cut so CI stays short;
the stage logic is the shipped one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from mmrec.data.sample import generate

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["sasrec", "gru4rec", "sasrec_ef", "sasrec_lf", "kdsr", "odmt", "odmt_kdsr"]


def _sh(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


def _stale_stages(project: Path, env: dict[str, str]) -> set[str]:
    """Stage names `dvc status --json` reports as changed."""
    out = _sh([sys.executable, "-m", "dvc", "status", "--json"], project, env)
    return {name.split("@")[0] for name in json.loads(out or "{}")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh DVC project with the shipped dvc.yaml, stages and package, after one `dvc repro`."""
    proj = tmp_path_factory.mktemp("clone")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in ("stages", "mmrec"):
        shutil.copytree(ROOT / d, proj / d, ignore=ignore)
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    generate(proj / "data" / "raw" / "sample", n_items=300, n_users=400)

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["models"] = MODELS
    # The sample's profile is what applies while data.name is `sample`: cut its epochs there.
    profile = params["profiles"]["sample"]
    profile["train"]["common"].update(epochs=2, patience=1)
    for m in ("odmt", "odmt_kdsr"):
        profile["train"][m].update(epochs=2, rampup_epochs=1)
    profile["teacher"]["epochs"] = 3
    params["teacher"].update(random_pairs=5000, max_cooccurring_pairs=20000, kmeans_iters=5)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # the stage commands say `python`: the interpreter running the tests, with its packages
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    _sh(["git", "init", "-q"], proj, env)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], proj, env)
    _sh([sys.executable, "-m", "dvc", "repro"], proj, env)
    return proj, env


@pytest.mark.slow
def test_repro_writes_every_documented_output(project):
    proj, _ = project
    d = proj / "data" / "sample"
    for f in ("ingest/items.parquet", "ingest/interactions.parquet", "ingest/splits.parquet",
              "ingest/report.json", "features/summary.json", "report/report.md", "report/report.html"):
        assert (d / f).is_file(), f
    feats = sorted(p.name for p in (d / "features").glob("*.parquet"))
    assert len(feats) == 2 and feats[0].startswith("image-") and feats[1].startswith("text-")
    assert len([p for p in (d / "teacher").iterdir() if p.is_dir()]) == 2
    report = (d / "report" / "report.md").read_text()
    for m in MODELS:
        assert (d / "models" / m / "model.pt").is_file(), m
        log = pl.read_csv(d / "models" / m / "train_log.tsv", separator="\t")
        assert 1 <= log.height <= 2 and "epoch" in log.columns, m
        metrics = json.loads((d / "results" / m / "metrics.json").read_text())
        assert 0.0 <= metrics["test_ndcg@10"] <= metrics["test_recall@10"] <= metrics["test_recall@20"] <= 1.0, m
        assert metrics["test_users"] > 0, m
        assert m in report, m


@pytest.mark.slow
def test_every_parquet_output_opens_in_polars_pandas_and_duckdb(project):
    import duckdb
    import pandas as pd

    proj, _ = project
    files = sorted((proj / "data" / "sample").rglob("*.parquet"))
    assert len(files) >= 3 + 2 + 4                                     # ingest, features, teachers
    for f in files:
        n = pl.read_parquet(f).height
        assert n > 0, f
        assert pd.read_parquet(f).shape[0] == n, f
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{f.as_posix()}')").fetchall()[0][0] == n, f


@pytest.mark.slow
def test_second_repro_does_nothing_and_encoder_swap_invalidates_downstream_only(project):
    proj, env = project
    out = _sh([sys.executable, "-m", "dvc", "repro"], proj, env)
    assert "Running stage" not in out, out
    assert _stale_stages(proj, env) == set()

    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["extract"]["text"]["encoder"] = "sentence-transformers:paraphrase-MiniLM-L3-v2"
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert _stale_stages(proj, env) == {"extract", "teacher", "train", "evaluate", "report"}
