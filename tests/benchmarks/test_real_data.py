"""benchmarks/real_data.py derives a params file that the pipeline accepts."""

import importlib.util
from pathlib import Path

import pytest

from mmrec.config import parse_params

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "real_data.py"


def _module():
    spec = importlib.util.spec_from_file_location("real_data", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("models", [None, ["sasrec", "odmt"], ["sasrec", "odmt_no_kd"]])
def test_derived_params_are_valid_for_any_model_subset(tmp_path, models):
    mod = _module()
    params = mod.derive_params("scientific", tmp_path, models)
    parse_params(params, "derived")                                      # raises on a bad section
    expected = models or [*parse_params({}, "x").train.models, *mod.ABLATIONS]
    assert params["train"]["models"] == expected
    assert all((k in params["train"]) == (k in expected) for k in mod.ABLATIONS)


def test_seeds_add_replicates_and_set_overrides(tmp_path):
    mod = _module()
    params = mod.derive_params("scientific", tmp_path, ["sasrec", "kdsr_plain"], seeds=[1, 2],
                               overrides=["train.common.amp=cuda+cpu", "evaluate.bootstrap=200"])
    assert params["train"]["models"] == ["sasrec", "kdsr_plain", "sasrec_s1", "kdsr_plain_s1",
                                         "sasrec_s2", "kdsr_plain_s2"]
    assert params["train"]["kdsr_plain_s2"] == {"arch": "kdsr", "skd": False, "ckd": False, "seed": 2}
    p = parse_params(params, "derived")
    assert p.train.common.amp == "cuda+cpu" and p.evaluate.bootstrap == 200
    from mmrec.report.stage import seed_groups

    assert seed_groups(p) == {"sasrec": ["sasrec", "sasrec_s1", "sasrec_s2"],
                              "kdsr_plain": ["kdsr_plain", "kdsr_plain_s1", "kdsr_plain_s2"]}


def test_job_order_starts_the_token_transformers_first(tmp_path):
    mod = _module()
    params = mod.derive_params("scientific", tmp_path, ["sasrec", "kdsr", "odmt", "gru4rec", "odmt_no_kd",
                                                        "odmt_kdsr"], seeds=[1])
    order = mod.job_order(params["train"])
    assert sorted(order) == sorted(params["train"]["models"])
    # the ablation and the replicates are ODMT by arch, not by name; the rest keep their order
    assert order[:6] == ["odmt", "odmt_no_kd", "odmt_kdsr", "odmt_s1", "odmt_no_kd_s1", "odmt_kdsr_s1"]
    assert order[6:] == ["sasrec", "kdsr", "gru4rec", "sasrec_s1", "kdsr_s1", "gru4rec_s1"]


def test_an_entry_defined_by_set_gets_its_seed_replicates(tmp_path):
    mod = _module()
    params = mod.derive_params("hm", tmp_path, ["sasrec", "odmt_cold"], seeds=[1],
                               overrides=["train.odmt_cold={arch: odmt, cold_id: mask, id_dropout: 0.2}"])
    assert params["train"]["models"] == ["sasrec", "odmt_cold", "sasrec_s1", "odmt_cold_s1"]
    assert params["train"]["odmt_cold_s1"] == {"arch": "odmt", "cold_id": "mask", "id_dropout": 0.2, "seed": 1}
    p = parse_params(params, "derived")
    from mmrec.report.stage import seed_groups

    assert seed_groups(p)["odmt_cold"] == ["odmt_cold", "odmt_cold_s1"]
    assert mod.job_order(params["train"])[:2] == ["odmt_cold", "odmt_cold_s1"]
