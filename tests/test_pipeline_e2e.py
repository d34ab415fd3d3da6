"""End to end: `dvc repro` of the shipped project (dvc.yaml, params.yaml, embedded sample) in a
fresh copy, as a user's first run after cloning: it writes exactly the committed dvc.lock and
metrics/, every documented output opens, a second run has nothing to do, and an encoder swap
makes exactly the stages downstream of it stale.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from pipeline_helpers import ROOT, copy_project, dvc, stale_stages

MODELS = ["sasrec", "gru4rec", "sasrec_ef", "sasrec_lf", "kdsr", "odmt", "odmt_kdsr"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The shipped project in a fresh folder, after one `dvc repro`."""
    proj = tmp_path_factory.mktemp("clone")
    env = copy_project(proj)
    dvc(proj, env, "repro")
    return proj, env


@pytest.mark.slow
def test_fresh_repro_writes_exactly_the_committed_lock_and_metrics(project):
    """Every stage repeats bit for bit across processes (same machine, thread count and library
    versions), so `git status` stays clean after a user's first run. When this fails after a
    code or params change, run `dvc repro` on a fresh clone and commit its dvc.lock and metrics/."""
    proj, _ = project
    files = ["dvc.lock", *(f"metrics/{p.name}" for p in sorted((ROOT / "metrics").glob("*.json")))]
    changed = [f for f in files if (proj / f).read_bytes() != (ROOT / f).read_bytes()]
    assert not changed, (f"a fresh `dvc repro` rewrote {changed}: commit the outputs of a fresh "
                         "clone's `dvc repro` (or a stage no longer repeats across processes)")


@pytest.mark.slow
def test_repro_writes_every_documented_output(project):
    proj, _ = project
    d = proj / "data" / "sample"
    for f in ("ingest/items.parquet", "ingest/interactions.parquet", "ingest/splits.parquet",
              "ingest/images.parquet", "ingest/report.json", "features/text/summary.json",
              "features/image/summary.json", "report/report.md", "report/report.html"):
        assert (d / f).is_file(), f
    for m in ("text", "image"):
        assert [p.name for p in (d / "features" / m).glob("*.parquet")][0].startswith(f"{m}-")
        assert len([p for p in (d / "teacher" / m).iterdir() if p.is_dir()]) == 1
    report = (d / "report" / "report.md").read_text()
    for m in MODELS:
        assert (d / "models" / m / "model.pt").is_file(), m
        log = pl.read_csv(d / "models" / m / "train_log.tsv", separator="\t")
        assert 1 <= log.height and "epoch" in log.columns, m
        metrics = json.loads((d / "results" / m / "metrics.json").read_text())
        assert 0.0 <= metrics["test_ndcg@10"] <= metrics["test_recall@10"] <= metrics["test_recall@20"] <= 1.0, m
        assert metrics["test_users"] > 0, m
        assert m in report, m
        head = json.loads((proj / "metrics" / f"{m}.json").read_text())
        assert head["test"]["recall@10"] == pytest.approx(metrics["test_recall@10"], abs=1e-6), m

@pytest.mark.slow
def test_metrics_show_fits_200_columns_for_seven_models(project):
    proj, env = project
    shown = dvc(proj, env, "metrics", "show").stdout.splitlines()
    assert len(shown) == 1 + len(MODELS)                                # header + one row per model
    assert max(len(line) for line in shown) <= 200, "\n".join(shown)


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
    out = dvc(proj, env, "repro").stdout
    assert "Running stage" not in out, out
    assert stale_stages(proj, env) == set()

    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["extract"]["text"]["encoder"] = "sentence-transformers:paraphrase-MiniLM-L3-v2"
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # params.yaml is validated and resolved first; then only the stages whose own (resolved)
    # params changed are stale, and their downstream follows once they re-run
    assert stale_stages(proj, env) == {"params"}
    dvc(proj, env, "repro", "params")
    assert stale_stages(proj, env) == {"extract@text", "report"}
