"""dvc.yaml against the code: every model depends on exactly the folders it loads, the model list
matches params.yaml, and each stage reads only its own params (fast; no `dvc repro`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from mmrec.models.registry import model_class
from mmrec.train.stage import reads_features

ROOT = Path(__file__).resolve().parents[1]
NOTHING = "ingest/splits.parquet"  # the dependency slot of a model that reads no features / teacher


def _dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_models_and_their_reads_match_the_code():
    reads = _dvc_yaml()["vars"][0]["reads"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(reads) == params["train"]["models"]
    for model, r in reads.items():
        arch = (params["train"].get(model) or {}).get("arch", model)
        cls = model_class(arch)
        assert r["features"] == ("features" if reads_features(cls) else NOTHING), model
        assert r["teacher"] == ("teacher" if cls.needs_teacher else NOTHING), model
    loss_files = list(_dvc_yaml()["plots"][0]["loss"]["y"])
    assert loss_files == [f"data/${{data.name}}/models/{m}/train_log.tsv" for m in reads]


def test_resolved_stages_depend_only_on_what_they_read():
    """`dvc stage list` resolves the templates; the resolved deps/params come from `dvc` itself."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        stages = {s.addressing: s for s in repo.index.stages}
    assert {"extract@text", "extract@image", "teacher@text", "teacher@image", "train@sasrec",
            "evaluate@odmt_kdsr", "report"} <= set(stages)

    def deps(name: str) -> set[str]:
        return {d.def_path for d in stages[name].deps}

    def params(name: str) -> set[str]:
        return {k for d in stages[name].deps if hasattr(d, "params") for k in (d.params or [])}

    assert "data/sample/ingest/items.parquet" in deps("extract@text")
    assert "data/sample/ingest/images.parquet" in deps("extract@image")
    assert not {p for p in params("extract@image") if p.startswith("extract.text")}
    assert "extract.image" in params("extract@image") and "extract.text" not in params("extract@image")
    assert "data/sample/features/text" in deps("teacher@text")
    assert not any("features" in d for d in deps("teacher@text") - {"data/sample/features/text"})
    for stage in ("train@sasrec", "train@gru4rec", "evaluate@sasrec"):
        assert not any(d.startswith(("data/sample/features", "data/sample/teacher")) for d in deps(stage)), stage
        assert not any(p.startswith("extract") for p in params(stage)), stage
    assert {"data/sample/features", "data/sample/teacher"} <= deps("train@kdsr")
    assert "data/sample/features" in deps("train@odmt") and "data/sample/teacher" not in deps("train@odmt")
    assert [o.def_path for o in stages["evaluate@kdsr"].outs] == [
        "data/sample/results/kdsr/metrics.json", "data/sample/results/kdsr/ranks.parquet", "metrics/kdsr.json"]
    assert not stages["evaluate@kdsr"].outs[2].use_cache                    # git tracks the headline
    # recommend@<model>: the serving export reads the full history (interactions), not the splits
    assert "data/sample/ingest/interactions.parquet" in deps("recommend@sasrec")
    assert not any(d.startswith(("data/sample/features", "data/sample/teacher")) for d in deps("recommend@sasrec"))
    assert {"data/sample/features", "data/sample/teacher"} <= deps("recommend@kdsr")
    assert params("recommend@odmt") == {"device", "recommend"}
    # train@<entry> tracks its resolved entry (model defaults, common, arch section, own section)
    assert {"train.entries.kdsr", "seed", "evaluate.mask_history"} <= params("train@kdsr")
    assert not any(p.startswith(("train.common", "profiles")) for p in params("train@kdsr"))
    assert [o.def_path for o in stages["recommend@odmt"].outs] == ["data/sample/recommendations/odmt"]


def test_gitignore_keeps_metrics_and_lock_tracked_and_plots_out():
    out = subprocess.run(["git", "check-ignore", "--no-index", "-v", "metrics/sasrec.json", "dvc.lock",
                          "dvc_plots/index.html", "data/sample/x"], cwd=ROOT, capture_output=True, text=True)
    ignored = {line.split("\t")[-1] for line in out.stdout.splitlines()}
    assert ignored == {"dvc_plots/index.html", "data/sample/x"}, json.dumps(out.stdout)
