"""profiles: dataset-dependent settings that fill the keys params.yaml's sections leave unset."""

from pathlib import Path

import pytest
import yaml

from mmrec.config import ParamsError, load_params, parse_params, resolved_params

BASE = {"teacher": {"epochs": None, "lr": 0.002},
        "train": {"models": ["sasrec", "odmt"], "common": {"epochs": 200, "patience": None},
                  "odmt": {"loss": "inbatch", "imt_layers": 2}},
        "profiles": {"default": {"teacher": {"epochs": 300}, "train": {"common": {"patience": 10}}},
                     "sample": {"teacher": {"epochs": 100},
                                "train": {"common": {"patience": 3}, "odmt": {"epochs": 10}}}}}
PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"


def test_profile_fills_unset_keys_of_its_dataset_over_the_default_profile():
    sample = parse_params({**BASE, "data": {"name": "sample"}})
    assert sample.profile == "default+sample"
    assert sample.teacher.epochs == 100 and sample.teacher.lr == 0.002
    assert sample.train.common.patience == 3 and sample.train.common.epochs == 200
    assert sample.train.section("odmt") == {"loss": "inbatch", "imt_layers": 2, "epochs": 10}
    real = parse_params({**BASE, "data": {"name": "scientific"}})
    assert real.profile == "default" and real.teacher.epochs == 300 and real.train.common.patience == 10
    assert "epochs" not in real.train.section("odmt")


def test_a_value_written_in_a_section_wins_over_every_profile():
    """`dvc exp run -S teacher.epochs=7` writes the key into its section: it must be what runs."""
    raw = {**BASE, "data": {"name": "sample"}, "teacher": {"epochs": 7, "lr": 0.002}}
    assert parse_params(raw).teacher.epochs == 7
    raw["train"] = {**BASE["train"], "odmt": {"epochs": 4}}
    assert parse_params(raw).train.section("odmt")["epochs"] == 4


def test_a_key_left_null_without_a_profile_fails_naming_it():
    with pytest.raises(ParamsError, match=r"teacher\.epochs"):
        parse_params({"teacher": {"epochs": None}})


@pytest.mark.parametrize("bad, message", [
    ({"train": {"models": ["sasrec"]}}, r"cannot set train\.models"),
    ({"data": {"name": "x"}}, r"cannot set data\.name"),
    ({"teacher": {"epoch": 3}}, r"teacher\.epoch: unknown key \(did you mean 'epochs'\?\)"),
])
def test_profile_errors_name_the_key(bad, message):
    with pytest.raises(ParamsError, match=message):
        parse_params({"data": {"name": "sample"}, "profiles": {"sample": bad}})


def test_shipped_params_yaml_leaves_every_profiled_key_to_its_profile(tmp_path):
    """A key a profile sets must be null or absent in its section, or the profile would be dead."""
    raw = yaml.safe_load(PARAMS_YAML.read_text())

    def written(section, prof, path=""):
        for key, value in prof.items():
            mine = (section or {}).get(key) if isinstance(section, dict) else None
            if isinstance(value, dict):
                yield from written(mine, value, f"{path}{key}.")
            elif mine is not None:
                yield f"{path}{key}"

    for name, prof in raw["profiles"].items():
        assert not list(written(raw, prof)), name
    assert raw["data"]["name"] == "sample"
    assert load_params(PARAMS_YAML).profile == "default+sample"
    real = raw | {"data": raw["data"] | {"name": "other"}}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(real))
    p = load_params(tmp_path / "real.yaml")
    assert p.profile == "default" and p.data.max_history == 51 and p.train.section("odmt")["hidden"] == 128


def test_resolved_params_hold_what_each_entry_trains_with():
    p = load_params(PARAMS_YAML)
    r = resolved_params(p)
    assert r["data"]["max_history"] == 15 and r["profile"] == "default+sample"
    assert "profiles" not in r and "threads" not in r
    odmt = r["train"]["entries"]["odmt"]
    assert odmt["arch"] == "odmt" and odmt["common"]["epochs"] == 10 and odmt["model"]["hidden"] == 64
    # a model's own default is recorded too (so changing it in code re-runs what it changes)
    assert r["train"]["entries"]["sasrec"]["model"]["loss"] == "full_ce"
    # issue 23: ODMT scores new items from content by default; late fusion and KDSR keep their ID
    # rows (the levers did not help them), odmt_kdsr too (the levers were not measured on it)
    assert (odmt["model"]["cold_id"], odmt["model"]["id_dropout"]) == ("mask", 0.2)
    for name in ("sasrec_lf", "kdsr", "odmt_kdsr"):
        assert r["train"]["entries"][name]["model"]["cold_id"] == "table", name
    assert list(r["train"]["entries"]) == p.train.models


def test_the_readme_ablations_of_odmt_inherit_its_shipped_default():
    """`odmt_no_kd: {arch: odmt, distill: false}` added to the shipped params.yaml trains with
    ODMT's [MASK] ID and ID dropout, so the README's ablation commands compare like with like."""
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    raw["train"]["models"] = [*raw["train"]["models"], "odmt_no_kd"]
    raw["train"]["odmt_no_kd"] = {"arch": "odmt", "distill": False}
    ablation = resolved_params(parse_params(raw))["train"]["entries"]["odmt_no_kd"]["model"]
    assert (ablation["cold_id"], ablation["id_dropout"], ablation["distill"]) == ("mask", 0.2, False)
