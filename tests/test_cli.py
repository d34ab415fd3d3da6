import json
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

import mmrec.cli as cli
from evaluate_fakes import FakeModel, write_items, write_stand_in_checkpoint
from mmrec.io import write_parquet
from mmrec.models import checkpoint


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
    write_stand_in_checkpoint(tmp_path / "data/tiny/models/sasrec/model.pt")
    model = FakeModel(30, dim=4, seed=3, max_len=3)   # the trained max_len, read from the model
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: model)
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
    import mmrec.report.stage as report

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
    assert "known: params, ingest, extract, teacher, train, evaluate, report" in capsys.readouterr().err
    assert cli.main(["run", "ingest", "sasrec", *_args(root)]) == 2


def test_run_missing_module_fails_only_when_used(project, monkeypatch, capsys):
    root, _ = project
    monkeypatch.setitem(cli.STAGES, "teacher", ("mmrec.no_such_package.stage", False))
    assert cli.main(["run", "teacher", *_args(root)]) == 2
    assert "not available" in capsys.readouterr().err


def _export(root, monkeypatch, model):
    """`mmrec run recommend sasrec` with the fake model (the stage's own loader patched)."""

    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: model)
    assert cli.main(["run", "recommend", "sasrec", *_args(root)]) == 0


def _recommend(root, capsys, *extra):
    code = cli.main(["recommend", "--model", "sasrec", "--json", *extra, *_args(root)])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


def test_recommend_reads_the_export_without_the_model(project, monkeypatch, capsys):
    root, model = project
    code, slow, err = _recommend(root, capsys, "--user", "alice", "-k", "6")
    assert code == 0 and slow["source"] == "model"
    assert "recommendations.sqlite: not found; scoring with the model instead" in err
    _export(root, monkeypatch, model)
    capsys.readouterr()

    def no_model(*a, **k):
        raise AssertionError("the fast path must not load the model")

    monkeypatch.setattr(checkpoint, "load_model", no_model)
    code, fast, err = _recommend(root, capsys, "--user", "alice", "-k", "6")
    assert code == 0 and err == "" and fast["source"] == "export"
    assert {k: v for k, v in fast.items() if k != "source"} == {k: v for k, v in slow.items() if k != "source"}
    # the same answer on the validating path (what `recommend` does when the fast path cannot read
    # params.yaml plainly), and the fast path never validates params
    assert cli.recommend("sasrec", "alice", 6, str(root / "params.yaml"), str(root)) == fast
    monkeypatch.setattr(cli, "_params", no_model)
    assert _recommend(root, capsys, "--user", "alice", "-k", "6")[1] == fast
    code, _, err = _recommend(root, capsys, "--user", "carol")
    assert code == 2 and "user 'carol' is not in" in err and "known ids look like: alice, bob" in err


def test_recommend_falls_back_when_the_export_cannot_answer(project, monkeypatch, capsys):
    root, model = project
    _export(root, monkeypatch, model)
    capsys.readouterr()
    code, rec, err = _recommend(root, capsys, "--user", "bob", "-k", "51")     # recommend.k is 50
    assert code == 0 and rec["source"] == "model" and "fewer than -k 51" in err
    code, rec, err = _recommend(root, capsys, "--user", "bob", "--no-mask")
    assert code == 0 and rec["source"] == "model" and "exported with history masked" in err
    inter = root / "data/tiny/ingest/interactions.parquet"
    write_parquet(pl.read_parquet(inter).vstack(pl.DataFrame(                  # bob bought another item
        {"user_idx": [2], "user_id": ["bob"], "item_idx": [8], "timestamp": [7]},
        schema=pl.read_parquet_schema(inter))), inter)
    code, rec, err = _recommend(root, capsys, "--user", "bob")
    assert code == 0 and rec["source"] == "model" and rec["n_interactions"] == 3
    assert "stale: interactions.parquet changed since the export" in err
    assert 8 not in [r["item_idx"] for r in rec["recommendations"]]


def test_recommend_ad_hoc_history(project, capsys):
    root, model = project
    code, rec, err = _recommend(root, capsys, "--history", "I0004, I0009,I0002", "-k", "3")
    assert code == 0 and rec["source"] == "model" and rec["user_id"] is None and err == ""
    assert [h["item_idx"] for h in rec["history"]] == [4, 9, 2]
    scores = (model.user_repr(torch.tensor([[4, 9, 2]])) @ model.item_repr().T)[0].detach()
    scores[[0, 4, 9, 2]] = -float("inf")
    order = sorted(range(31), key=lambda i: (-scores[i].item(), i))[:3]
    assert [r["item_idx"] for r in rec["recommendations"]] == order
    assert cli.main(["recommend", "--model", "sasrec", "--history", "I0004,X1", *_args(root)]) == 2
    assert "item id(s) 'X1' not in" in capsys.readouterr().err
    assert cli.main(["recommend", "--model", "sasrec", "--history", "I0004", "-k", "2", *_args(root)]) == 0
    assert "ad-hoc history of 1 items" in capsys.readouterr().out
    with pytest.raises(SystemExit):                                            # one or the other
        cli.main(["recommend", "--model", "sasrec", "--user", "bob", "--history", "I0004", *_args(root)])


def test_recommend_fast_path_does_not_import_torch(project, monkeypatch, capsys):
    """A fresh process answering from the export never imports torch (nor polars)."""
    import os
    import subprocess

    root, model = project
    _export(root, monkeypatch, model)
    code = ("import sys, mmrec.cli as c; "
            f"rc = c.main(['recommend', '--model', 'sasrec', '--user', 'alice', '--json', '--params', "
            f"{str(root / 'params.yaml')!r}, '--root', {str(root)!r}]); "
            "print(sorted(m for m in ('torch', 'polars') if m in sys.modules)); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["source"] == "export"
    assert res.stdout.splitlines()[-1] == "[]"


def test_recommend_into_a_closed_pipe_exits_quietly(project, monkeypatch):
    """`mmrec recommend ... | head`: the reader is gone before anything is written (its end of
    the pipe is closed before the child starts), so the first write fails with EPIPE; the
    command stops without an error line, with the shell's SIGPIPE status."""
    import os
    import subprocess

    root, model = project
    _export(root, monkeypatch, model)
    for fmt in ([], ["--json"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmrec.cli", "recommend", "--model", "sasrec", "--user", "alice",
             *fmt, *_args(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
        proc.stdout.close()  # the reader closes early
        err = proc.stderr.read().decode()
        assert proc.wait() == cli.EXIT_BROKEN_PIPE and err == "", err
