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
