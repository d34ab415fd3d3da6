import json
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent / "evaluate"))

import mmrec.cli as cli  # noqa: E402
from evaluate_fakes import FakeModel, write_items  # noqa: E402
from mmrec.io import write_parquet  # noqa: E402


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny project: params.yaml, items and interactions, a placeholder model.pt, a fake model."""
    raw = {"data": {"name": "tiny"}, "device": "cpu",
           "train": {"models": ["sasrec", "kdsr"], "common": {"max_len": 3}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    write_items(tmp_path, 30)
    inter = pl.DataFrame({
        "user_idx": pl.Series([1] * 5 + [2] * 2, dtype=pl.Int32),
        "user_id": ["alice"] * 5 + ["bob"] * 2,
        "item_idx": pl.Series([4, 9, 2, 17, 9, 3, 5], dtype=pl.Int32),
        "timestamp": pl.Series([10, 20, 30, 40, 50, 5, 6], dtype=pl.Int64),
    })
    write_parquet(inter, tmp_path / "data/tiny/ingest/interactions.parquet")
    mdir = tmp_path / "data/tiny/models/sasrec"
    mdir.mkdir(parents=True)
    (mdir / "model.pt").write_bytes(b"placeholder")
    model = FakeModel(30, dim=4, seed=3, max_len=3)   # the trained max_len, read from the model
    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: model)
    return tmp_path, model


def _args(root):
    return ["--params", str(root / "params.yaml"), "--root", str(root)]


def test_recommend_json(project, capsys):
    root, model = project
    assert cli.main(["recommend", "--model", "sasrec", "--user", "alice", "-k", "4", "--json", *_args(root)]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["user_idx"] == 1 and rec["n_interactions"] == 5
    assert [h["item_idx"] for h in rec["history"]] == [2, 17, 9]          # last max_len, oldest first
    assert rec["history"][0]["text"] == "item number 2"
    # reference: the model's scores for the left-padded last 3 items, history masked
    scores = (model.user_repr(torch.tensor([[2, 17, 9]])) @ model.item_repr().T)[0].detach()
    scores[[0, 4, 9, 2, 17]] = -float("inf")
    expected = torch.topk(scores, 4).values.tolist()
    got = [r["score"] for r in rec["recommendations"]]
    assert got == pytest.approx(expected)
    ids = [r["item_idx"] for r in rec["recommendations"]]
    assert not set(ids) & {4, 9, 2, 17} and [r["rank"] for r in rec["recommendations"]] == [1, 2, 3, 4]
    assert all(r["item_id"] == f"I{r['item_idx']:04d}" for r in rec["recommendations"])


def test_recommend_text_and_no_mask(project, capsys):
    root, _ = project
    assert cli.main(["recommend", "--model", "sasrec", "--user", "bob", "-k", "30", "--no-mask", *_args(root)]) == 0
    out = capsys.readouterr().out
    assert "user bob (user_idx 2): 2 interactions" in out
    assert "top-30 by sasrec (history not masked)" in out
    assert "image: images/I0003.jpg" in out


def test_recommend_errors(project, capsys):
    root, _ = project
    assert cli.main(["recommend", "--model", "sasrec", "--user", "carol", *_args(root)]) == 2
    assert "known ids look like: alice, bob" in capsys.readouterr().err
    assert cli.main(["recommend", "--model", "kdsr", "--user", "alice", *_args(root)]) == 2
    assert "kdsr/model.pt: not found" in capsys.readouterr().err
    assert cli.main(["recommend", "--model", "nope", "--user", "alice", *_args(root)]) == 2
    assert "known: sasrec, kdsr" in capsys.readouterr().err


def test_inspect(project, capsys):
    root, _ = project
    path = root / "data/tiny/ingest/items.parquet"
    assert cli.main(["inspect", str(path), "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "30 rows, 5 columns" in out
    assert "item_idx" in out and "Int32" in out and "image_path" in out
    assert "first 2 rows" in out and "I0001" in out and "I0003" not in out
    bad = root / "notparquet.parquet"
    bad.write_text("hello")
    assert cli.main(["inspect", str(bad)]) == 2
    assert "not a readable Parquet file" in capsys.readouterr().err
    assert cli.main(["inspect", str(root / "missing.parquet")]) == 2


def test_run_dispatches_to_stage_modules(project, monkeypatch, capsys):
    root, _ = project
    seen = {}
    import mmrec.evaluate.report as report

    monkeypatch.setattr(report, "run", lambda params, r: seen.setdefault("report", (params.data.name, r)) and {"ok": 1})
    assert cli.main(["run", "report", *_args(root)]) == 0
    assert seen["report"] == ("tiny", root)
    import mmrec.evaluate.stage as stage

    monkeypatch.setattr(stage, "run", lambda params, r, m: {"model": m})
    assert cli.main(["run", "evaluate", "sasrec", *_args(root)]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    sizes = out.pop("threads")  # the pool sizes the run used, added to every stage summary
    assert out == {"model": "sasrec"} and 1 <= sizes["torch"] and sizes["budget"] <= sizes["cpus_available"]
    assert cli.main(["run", "bogus", *_args(root)]) == 2
    assert "known: ingest, extract, teacher, train, evaluate, report" in capsys.readouterr().err
    assert cli.main(["run", "ingest", "sasrec", *_args(root)]) == 2


def test_run_missing_module_fails_only_when_used(project, monkeypatch, capsys):
    root, _ = project
    monkeypatch.setitem(cli.STAGES, "teacher", ("mmrec.no_such_package.stage", False))
    assert cli.main(["run", "teacher", *_args(root)]) == 2
    assert "not available" in capsys.readouterr().err
