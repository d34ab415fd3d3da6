"""benchmarks/scale.py (issue 26) runs end to end on a tiny size, so the script cannot rot."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_scale_quick_runs_a_model_with_tokens_and_teachers(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--quick", "--users", "80",
                          "--items", "120", "--batches", "1", "--valid-users", "32",
                          "--models", "odmt_kdsr", "--json", str(out)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = {r["model"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"odmt_kdsr"}
    for r in rows.values():
        assert "error" not in r
        assert r["batches_per_epoch"] == math.ceil(r["train_windows"] / r["batch_size"])
        assert r["epoch_total_s"] >= r["epoch_train_s"] > 0
        assert r["valid_users_timed"] == 32
        assert r["peak_rss_mb"] >= r["rss_after_setup_mb"] > 0
    # params.yaml's real-data profile is applied, not the sample's (ODMT+KDSR: 2 IMT layers, max_len 50)
    assert rows["odmt_kdsr"]["max_len"] == 50 and rows["odmt_kdsr"]["loss"] == "inbatch"
    assert "| odmt_kdsr |" in res.stdout
