"""profiles.<dataset>: settings merged over params.yaml's real-data defaults for one dataset."""

import pytest
import yaml

from mmrec.config import ParamsError, load_params, parse_params

BASE = {"teacher": {"epochs": 300, "lr": 0.002},
        "train": {"models": ["sasrec", "odmt"], "common": {"epochs": 200, "patience": 10},
                  "odmt": {"loss": "inbatch", "imt_layers": 2}},
        "profiles": {"sample": {"teacher": {"epochs": 100},
                                "train": {"common": {"patience": 3}, "odmt": {"epochs": 10}}}}}


def test_profile_applies_to_its_dataset_only_and_merges_deeply():
    sample = parse_params({**BASE, "data": {"name": "sample"}})
    assert sample.profile == "sample"
    assert sample.teacher.epochs == 100 and sample.teacher.lr == 0.002
    assert sample.train.common.patience == 3 and sample.train.common.epochs == 200
    assert sample.train.section("odmt") == {"loss": "inbatch", "imt_layers": 2, "epochs": 10}
    real = parse_params({**BASE, "data": {"name": "scientific"}})
    assert real.profile is None and real.teacher.epochs == 300 and real.train.common.patience == 10


@pytest.mark.parametrize("bad, message", [
    ({"train": {"models": ["sasrec"]}}, r"cannot set train\.models"),
    ({"data": {"name": "x"}}, r"cannot set data\.name"),
    ({"teacher": {"epoch": 3}}, r"teacher\.epoch: unknown key \(did you mean 'epochs'\?\)"),
])
def test_profile_errors_name_the_key(bad, message):
    with pytest.raises(ParamsError, match=message):
        parse_params({"profiles": {"sample": bad}})


def test_shipped_params_yaml_defaults_differ_from_the_sample_profile(tmp_path):
    """params.yaml's own values are the real-data defaults; the sample overrides some of them."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    assert raw["data"]["name"] == "sample" and "sample" in raw["profiles"]
    real = raw | {"data": raw["data"] | {"name": "other"}}
    (tmp_path / "real.yaml").write_text(yaml.safe_dump(real))
    assert load_params(tmp_path / "real.yaml").profile is None
    assert load_params(path).profile == "sample"
