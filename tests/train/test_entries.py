"""How train.models entries inherit settings, and the up-front check of the train section."""

import pytest

from mmrec.config import ParamsError, parse_params
from mmrec.train.entries import PROTOCOL_KEYS, resolve_entry

# The README's ablation recipes: each entry differs from the model it names in one switch.
ABLATIONS = {
    "kdsr_plain": ("kdsr", {"skd": False, "ckd": False}),
    "lf_paper": ("sasrec_lf", {"fst": "transformer"}),
    "odmt_no_imt": ("odmt", {"imt": False}),
    "odmt_no_kd": ("odmt", {"distill": False}),
}


def _train(models, sections=None, common=None, **top):
    raw = {"train": {"models": list(models), "common": common or {}, **(sections or {}), **top}}
    return parse_params(raw).train


def _parse(train_section):
    return parse_params({"train": train_section})


def test_alias_entry_starts_from_its_architecture_section():
    odmt = {"epochs": 7, "loss": "inbatch", "imt_layers": 1, "text_tokens": 8, "rampup_epochs": 3}
    train = _train(["odmt", "odmt_noid"], {"odmt": odmt, "odmt_noid": {"arch": "odmt", "use_id": False}},
                   common={"loss": "full_ce", "epochs": 50})
    base, var = resolve_entry(train, "odmt"), resolve_entry(train, "odmt_noid")
    assert var.arch == "odmt" and var.common.epochs == 7
    assert {k: v for k, v in var.config.items() if k != "use_id"} == base.config
    assert var.config["use_id"] is False and var.common == base.common


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_readme_ablations_change_exactly_one_thing(name):
    arch, switch = ABLATIONS[name]
    sections = {arch: {"epochs": 4, "hidden": 32}, name: {"arch": arch, **switch}}
    train = _train([arch, name], sections, common={"lr": 0.002})
    base, var = resolve_entry(train, arch), resolve_entry(train, name)
    assert var.common == base.common
    changed = {k for k in set(base.config) | set(var.config) if base.config.get(k) != var.config.get(k)}
    assert changed == set(switch)


def test_model_class_defaults_live_unless_common_writes_the_key():
    train = _train(["sasrec", "odmt", "gru4rec"])
    assert "loss" not in resolve_entry(train, "odmt").config          # OdmtConfig's inbatch applies
    assert "layers" not in resolve_entry(train, "gru4rec").config     # GRU4Rec's 1 layer applies
    written = _train(["sasrec", "odmt"], common={"loss": "full_ce", "max_len": 9})
    odmt = resolve_entry(written, "odmt")
    assert odmt.config["loss"] == "full_ce" and odmt.config["max_len"] == odmt.common.max_len == 9


def test_like_for_like_forces_the_protocol_keys_from_common():
    sections = {"odmt": {"loss": "inbatch", "epochs": 10, "patience": 9, "imt_layers": 1, "temperature": 0.5},
                "kdsr": {"epochs": 80}}
    common = {"loss": "full_ce", "loss_norm": "cosine", "temperature": 0.07, "epochs": 30, "patience": 4,
              "select_metric": "ndcg@10"}
    free = _train(["sasrec", "kdsr", "odmt"], sections, common)
    same = _train(["sasrec", "kdsr", "odmt"], sections, common, like_for_like=True)
    assert resolve_entry(free, "odmt").common.epochs == 10
    assert resolve_entry(free, "odmt").config["temperature"] == 0.5
    for name in ("sasrec", "kdsr", "odmt"):
        e = resolve_entry(same, name)
        assert {k: getattr(e.common, k) for k in PROTOCOL_KEYS} == common
        assert e.config["loss"] == "full_ce"
        assert e.config["loss_norm"] == "cosine" and e.config["temperature"] == 0.07
    assert resolve_entry(same, "odmt").config["imt_layers"] == 1       # model keys untouched


@pytest.mark.parametrize("train, message", [
    ({"models": ["sasrec"], "sasrek": {"hidden": 16}},
     r"train\.sasrek: unknown section.*did you mean 'sasrec'"),
    ({"models": ["sasrec"], "sasrec": {"hiden": 16}}, r"train\.sasrec\.hiden: unknown key.*'hidden'"),
    ({"models": ["sasrec", "x"], "x": {"arch": "odmt", "use_idd": False}},
     r"train\.x\.use_idd: unknown key for model 'odmt' \(did you mean 'use_id'\?\)"),
    ({"models": ["sasrecc"]}, r"unknown model 'sasrecc' \(did you mean 'sasrec'\?\)"),
    ({"models": ["sasrec"], "common": {"epoch": 3}}, r"train\.common\.epoch: unknown key \(did you mean 'epochs'\?\)"),
    ({"models": ["odmt"], "odmt": {"imt_layers": 0}}, r"train\.odmt\.imt_layers: Input should be greater"),
    ({"models": ["sasrec", "a"], "a": {"arch": "b"}, "b": {"arch": "sasrec"}}, r"train\.a: arch 'b' is itself an alias"),
])
def test_bad_train_sections_fail_when_params_load(train, message):
    with pytest.raises(ParamsError, match=message):
        _parse(train)


def test_architecture_sections_may_exist_without_an_entry():
    # train.odmt configures the odmt ablations even when odmt itself is not trained
    p = _parse({"models": ["sasrec", "noid"], "odmt": {"epochs": 3}, "noid": {"arch": "odmt", "use_id": False}})
    assert resolve_entry(p.train, "noid").common.epochs == 3


def test_each_shared_setting_is_declared_once():
    """train.common's model settings are SeqModelConfig's fields, inherited (not re-declared) by
    TrainCommon and every model config: a model may change a default, never a type or a bound."""
    from mmrec.models.configs import CONFIGS, ContentConfig, SeqModelConfig
    from mmrec.train.params import TrainCommon

    # every model's settings, and the inductive path of the models that read content
    base = ContentConfig.model_fields
    model_keys = set().union(*(cls.model_fields for cls in CONFIGS.values()))
    assert set(TrainCommon.model_fields) & model_keys == set(base)
    for cls in (TrainCommon, *CONFIGS.values()):
        assert set(SeqModelConfig.model_fields) <= set(cls.model_fields), cls.__name__
        for name, field in base.items():
            if name not in cls.model_fields:
                continue
            got = cls.model_fields[name]
            assert (got.annotation, got.metadata) == (field.annotation, field.metadata), (cls.__name__, name)
    with pytest.raises(ParamsError, match=r"train.gru4rec: layers: Input should be greater than or equal to 1"):
        parse_params({"train": {"models": ["gru4rec"], "gru4rec": {"layers": 0}}})
