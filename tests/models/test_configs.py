import subprocess
import sys
from pathlib import Path

from mmrec.models.configs import CONFIGS
from mmrec.models.registry import model_class, model_names

ROOT = Path(__file__).resolve().parents[2]


def test_configs_cover_the_registry_exactly():
    """The torch-free settings map and the model registry name the same models, and each
    registered class builds from exactly the settings class params validation used."""
    assert sorted(CONFIGS) == sorted(model_names())
    for name in model_names():
        assert model_class(name).config_cls is CONFIGS[name], name


def test_loading_params_imports_no_torch():
    """Every stage loads and validates params.yaml (train section included); the stages that do
    not model anything (ingest, report, the recommend lookup) must not pay for torch."""
    code = ("import sys; from mmrec.config import load_params; load_params('params.yaml'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
