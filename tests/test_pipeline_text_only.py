"""`dvc repro` on a dataset without pictures (text-only Amazon data, like Amazon Scientific):
extract@image and teacher@image succeed with an explicit "absent" output, and every model
trains and evaluates through DVC on text alone. Also: a misspelt key stops a targeted
`dvc repro`, and a second `dvc repro` does nothing."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from pipeline_helpers import dvc, make_project, ran_stages, stale_stages

MODELS = ["sasrec", "gru4rec", "sasrec_ef", "sasrec_lf", "kdsr", "odmt", "odmt_kdsr"]


def _edit_params(proj: Path, edit) -> None:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    edit(params)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_text_only_dataset_runs_every_model_through_dvc(tmp_path: Path) -> None:
    proj = tmp_path / "clone"
    proj.mkdir()
    env = make_project(proj, MODELS, n_items=200, n_users=250)

    # the sample's metadata without pictures, as Amazon Scientific ships it
    raw = proj / "data" / "raw" / "sample"
    for meta in raw.glob("meta_*.json.gz"):
        rows = [json.loads(line) for line in gzip.decompress(meta.read_bytes()).decode().splitlines()]
        meta.write_bytes(gzip.compress("".join(
            json.dumps({k: v for k, v in r.items() if not k.startswith("imageURL")}) + "\n" for r in rows).encode()))
    shutil.rmtree(raw / "images")
    _edit_params(proj, lambda p: p["data"].update(require=["text"]))
    first = ran_stages(dvc(proj, env, "repro").stdout)
    assert {"params", "extract@image", "teacher@image"} | {f"evaluate@{m}" for m in MODELS} <= first
    d = proj / "data" / "sample"
    assert "skipped" in json.loads((d / "features" / "image" / "summary.json").read_text())
    assert "skipped" in json.loads((d / "teacher" / "image" / "skipped.json").read_text())
    for m in MODELS:
        metrics = json.loads((d / "results" / m / "metrics.json").read_text())
        assert 0 <= metrics["test_recall@10"] <= 1, m
    ckpt = torch.load(d / "models" / "kdsr" / "model.pt", weights_only=True)
    assert ckpt["context"]["modalities"] == ["text"] and ckpt["context"]["teachers"] == ["text"]
    assert ran_stages(dvc(proj, env, "repro").stdout) == set()          # a second repro: nothing
    assert stale_stages(proj, env) == set()

    # a misspelt key stops even a targeted repro of an up-to-date stage, naming the key
    _edit_params(proj, lambda p: p.update(seeed=1))
    bad = dvc(proj, env, "repro", "evaluate@sasrec", ok=False)
    assert bad.returncode != 0 and "seeed: unknown key (did you mean 'seed'?)" in bad.stdout + bad.stderr
