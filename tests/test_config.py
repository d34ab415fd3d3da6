from pathlib import Path

import pytest
import yaml

from mmrec.config import ParamsError, load_params, parse_params
from mmrec.paths import encoder_slug, feature_path

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_params_validate():
    p = load_params(ROOT / "params.yaml")
    assert p.data.name == "sample"
    assert p.extract.text.encoder.startswith("sentence-transformers:")
    assert p.train.models[0] == "sasrec"


def test_unknown_key_is_named():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["min_user_interaction"] = 3  # typo
    with pytest.raises(ParamsError, match=r"data\.min_user_interaction: unknown key"):
        parse_params(raw)


def test_recommend_section_is_checked():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert parse_params(raw).recommend.k == 50 and parse_params(raw).recommend.mask_history is True
    raw["recommend"]["batch_user"] = 64  # typo
    with pytest.raises(ParamsError, match=r"recommend\.batch_user: unknown key.*batch_users"):
        parse_params(raw)
    with pytest.raises(ParamsError, match=r"recommend\.k"):
        parse_params({"recommend": {"k": 0}})


def test_wrong_type_and_bad_value_are_named():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["data"]["min_user_interactions"] = "many"
    raw["teacher"]["codes"] = 1000
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert "data.min_user_interactions" in str(err.value)
    assert "teacher.codes" in str(err.value)


def test_bad_source_lists_choices():
    with pytest.raises(ParamsError, match=r"data\.source: .*known: amazon2014, amazon2018, amazon2023, hm, table"):
        parse_params({"data": {"source": "amazon2020"}})


def test_train_section_must_be_mapping():
    with pytest.raises(ParamsError, match="train.sasrec must be a mapping"):
        parse_params({"train": {"sasrec": 3}})


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")


def test_encoder_slug_is_path_safe():
    assert encoder_slug("open_clip:ViT-B-32:laion2b_s34b_b79k") == "open_clip-vit-b-32-laion2b_s34b_b79k"
    assert encoder_slug("sentence-transformers:/models/my model") == "sentence-transformers-models-my-model"
    p = parse_params({})
    assert feature_path(p, "text").name == "text-sentence-transformers-all-minilm-l6-v2.parquet"


def test_select_metric_is_checked_when_params_load():
    """A typo in train.common.select_metric fails at once, not after the first epoch."""
    with pytest.raises(ParamsError, match=r"select_metric: .*'recal@10': known names are recall, ndcg, mrr"):
        parse_params({"train": {"common": {"select_metric": "recal@10"}}})
    with pytest.raises(ParamsError, match=r"K=7 is not among evaluate.ks \[5, 10, 20\]"):
        parse_params({"train": {"common": {"select_metric": "ndcg@7"}}})
    assert parse_params({"train": {"common": {"select_metric": "mrr@5"}}}).train.common.select_metric == "mrr@5"


@pytest.mark.parametrize("section, key", [
    ("evaluate", "equivalence_margin"),   # inf would call every difference "equivalent"
    ("teacher", "lr"),
    ("teacher", "noise_std"),
])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_floats_are_refused(section, key, value):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw[section][key] = value
    with pytest.raises(ParamsError, match=rf"{section}\.{key}.*finite"):
        parse_params(raw)


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_model_settings_are_refused(value):
    # per-model sections are validated by each model's own config class, after the top level
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["common"]["lr"] = value
    with pytest.raises(ParamsError, match=r"lr.*finite"):
        parse_params(raw)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"].setdefault("odmt", {})["kd_weight"] = value
    with pytest.raises(ParamsError, match=r"kd_weight.*finite"):
        parse_params(raw)
