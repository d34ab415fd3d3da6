import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import train_synth as ts
import yaml

from mmrec.config import ParamsError, parse_params
from mmrec.data.sequences import load_eval_split
from mmrec.models.checkpoint import load_model, read_checkpoint
from mmrec.train.stage import resolve_entry, run

REPO = Path(__file__).resolve().parents[2]


def _params(models, sections=None, **common):
    p = ts.params(**common).model_dump(mode="json")
    p["train"]["models"] = list(models)
    p["train"].update(sections or {})
    return parse_params(p)


def _trained(tmp_path, model, epochs):
    """(params, stage summary, model folder) of `model` trained by the stage on the tiny dataset."""
    ts.write_dataset(tmp_path)
    ts.write_features(tmp_path, ts.params())
    p = _params([model], epochs=epochs)
    return p, run(p, tmp_path, model, progress=False), tmp_path / f"data/tiny/models/{model}"


def test_stage_writes_checkpoint_and_log_and_round_trips(tmp_path):
    p, out, mdir = _trained(tmp_path, "sasrec_lf", 2)
    assert out["epochs"] == 2 and out["modalities"] == ["image", "text"]
    header, *rows = (mdir / "train_log.tsv").read_text().splitlines()
    cols = header.split("\t")
    assert len(rows) == 2
    for c in ("epoch", "loss", "loss_rec", "valid_recall@10", "valid_ndcg@10", "retention_item_text",
              "retention_image_image"):
        assert c in cols
    assert "epoch_seconds" not in cols    # wall clock: the DVC output's bytes must repeat
    ckpt = torch.load(mdir / "model.pt", weights_only=True)
    assert ckpt["arch"] == "sasrec_lf" and ckpt["context"]["modalities"] == ["image", "text"]
    assert not any(k.startswith("tables.vec_") for k in ckpt["state_dict"])  # frozen features stay out

    model = load_model(mdir, p, "cpu")
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k])
    ev = load_eval_split(tmp_path / "data/tiny/ingest", "valid", 8)
    with torch.no_grad():
        s = model.score(ev.histories[:3])
    assert s.shape == (3, 25) and torch.isfinite(s).all()


def test_same_params_same_weights(tmp_path):
    ts.write_dataset(tmp_path)
    p = _params(["gru4rec"], epochs=2)
    run(p, tmp_path, "gru4rec", progress=False)
    first = read_checkpoint(tmp_path / "data/tiny/models/gru4rec")["state_dict"]
    run(p, tmp_path, "gru4rec", progress=False)
    second = read_checkpoint(tmp_path / "data/tiny/models/gru4rec")["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_entry_variant_overrides_common_and_model_keys():
    p = _params(["sasrec", "sasrec_big"], {"sasrec_big": {"arch": "sasrec", "hidden": 32, "lr": 0.01,
                                                            "temperature": 0.5}}, epochs=2)
    arch, common, cfg = resolve_entry(p, "sasrec_big")
    assert arch == "sasrec"
    assert common.lr == 0.01 and common.hidden == 32 and common.epochs == 2
    assert cfg["hidden"] == 32 and cfg["temperature"] == 0.5 and cfg["max_len"] == 8
    assert "lr" not in cfg and "epochs" not in cfg


def test_unknown_entry_arch_and_key_fail_clearly(tmp_path):
    ts.write_dataset(tmp_path)
    with pytest.raises(KeyError, match="not in train.models"):
        resolve_entry(_params(["sasrec"]), "gru4rec")
    # Entries are checked when params load, before any stage runs.
    with pytest.raises(ParamsError, match="unknown model 'sasreq' .did you mean 'sasrec'.*known: .*sasrec"):
        _params(["mine"], {"mine": {"arch": "sasreq"}})
    with pytest.raises(ParamsError, match=r"train\.sasrec\.hiden: unknown key .* \(did you mean 'hidden'\?\)"):
        _params(["sasrec"], {"sasrec": {"hiden": 3}})


def test_missing_modality_and_teacher_fail_before_training(tmp_path):
    ts.write_dataset(tmp_path)
    ts.write_features(tmp_path, ts.params(), modalities=("text",))
    p = _params(["sasrec_ef"], {"sasrec_ef": {"modalities": ["image"]}})
    with pytest.raises(ValueError, match="'sasrec_ef' needs modality image"):
        run(p, tmp_path, "sasrec_ef", progress=False)
    with pytest.raises(ValueError, match="'kdsr' needs a KDSR teacher"):
        run(_params(["kdsr"]), tmp_path, "kdsr", progress=False)
    assert not (tmp_path / "data/tiny/models").exists()


def test_stage_script_runs_in_a_project_dir(tmp_path):
    ts.write_dataset(tmp_path)
    p = _params(["sasrec"], epochs=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p.model_dump(mode="json")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(REPO / "stages/train.py"), "sasrec"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "train sasrec (sasrec)" in res.stdout
    assert (tmp_path / "data/tiny/models/sasrec/model.pt").exists()
    assert (tmp_path / "data/tiny/models/sasrec/train_log.tsv").exists()


def test_id_only_models_load_no_features(tmp_path):
    """sasrec/gru4rec depend on no feature folder in dvc.yaml, so they must not read one either."""
    from mmrec.models.registry import model_class
    from mmrec.train.stage import reads_features

    ts.write_dataset(tmp_path)
    ts.write_features(tmp_path, ts.params())
    out = run(_params(["gru4rec"], epochs=1), tmp_path, "gru4rec", progress=False)
    assert out["modalities"] == []
    header = (tmp_path / "data/tiny/models/gru4rec/train_log.tsv").read_text().splitlines()[0]
    assert "retention" not in header
    ckpt = torch.load(tmp_path / "data/tiny/models/gru4rec/model.pt", weights_only=True)
    assert ckpt["context"]["modalities"] == []
    assert [reads_features(model_class(m)) for m in ("sasrec", "gru4rec", "sasrec_ef", "kdsr", "odmt")] == \
        [False, False, True, True, True]


def test_an_entry_seed_trains_a_replicate_and_defaults_to_the_top_level_seed(tmp_path):
    ts.write_dataset(tmp_path)
    p = _params(["sasrec", "sasrec_s1", "sasrec_s0"],
                {"sasrec_s1": {"arch": "sasrec", "seed": 1}, "sasrec_s0": {"arch": "sasrec", "seed": 0}},
                epochs=2)
    assert p.seed != 1
    p = p.model_copy(update={"seed": 0})
    summaries = {m: run(p, tmp_path, m, progress=False) for m in p.train.models}
    assert [summaries[m]["seed"] for m in p.train.models] == [0, 1, 0]
    w = {m: read_checkpoint(tmp_path / f"data/tiny/models/{m}")["state_dict"] for m in p.train.models}
    assert all(torch.equal(w["sasrec"][k], w["sasrec_s0"][k]) for k in w["sasrec"])   # seed 0 = top level
    assert not all(torch.equal(w["sasrec"][k], w["sasrec_s1"][k]) for k in w["sasrec"])


def test_an_untrainable_model_is_validated_once_and_saved(tmp_path):
    p, out, mdir = _trained(tmp_path, "content_knn", 5)
    assert out["epochs"] == 0 and out["best_epoch"] == 0
    header, *rows = (mdir / "train_log.tsv").read_text().splitlines()
    assert len(rows) == 1 and rows[0].split("\t")[0] == "0"
    assert "valid_recall@10" in header.split("\t")
    assert out["best_valid_recall@10"] == float(rows[0].split("\t")[header.split("\t").index("valid_recall@10")])
    ckpt = read_checkpoint(mdir)
    assert ckpt["arch"] == "content_knn" and ckpt["epoch"] == 0
    model = load_model(mdir, p, "cpu")
    ev = load_eval_split(tmp_path / "data/tiny/ingest", "valid", 8)
    s = model.score(ev.histories[:3])
    assert s.shape == (3, 25) and torch.isfinite(s).all() and s.abs().max() <= 1 + 1e-5
    (mdir / "resume.pt").write_bytes(b"an earlier trainable run's")      # same entry name
    run(p, tmp_path, "content_knn", progress=False)
    assert not (mdir / "resume.pt").exists()
