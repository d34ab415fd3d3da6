"""Clean errors: one `mmrec: error:` line naming the file/key (traceback only on request),
encoders checked before any extraction, terminal escapes never reach the terminal."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from mmrec import cli
from mmrec.config import parse_params
from mmrec.features import stage as extract_stage
from mmrec.features.encoders import EncoderPreflightError

REPO = Path(__file__).resolve().parents[2]


def _project(root: Path) -> Path:
    raw = root / "raw"
    raw.mkdir(parents=True)
    (raw / "meta_Toys.json").write_text('{"asin": "I1", "title": "t"}\n')
    (raw / "Toys.json").write_bytes(b"")  # the damage: an empty review file
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {"name": "e", "raw_dir": str(raw)}}))
    return raw / "Toys.json"


def _stage(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "MMREC_DEBUG"}
    full_env.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run([sys.executable, str(REPO / "stages" / "ingest.py"), *args], cwd=root,
                          env=full_env, capture_output=True, text=True, timeout=120)


def test_stage_script_error_is_one_clean_line(tmp_path: Path) -> None:
    bad = _project(tmp_path)
    res = _stage(tmp_path)
    assert res.returncode == 1
    assert res.stderr.startswith(f"mmrec: error: {bad}: empty file (0 bytes); ")
    assert "Traceback" not in res.stderr and "--debug or MMREC_DEBUG=1" in res.stderr
    for on in (_stage(tmp_path, "--debug"), _stage(tmp_path, MMREC_DEBUG="1")):
        assert on.returncode == 1 and "Traceback (most recent call last)" in on.stderr
        assert f"ValueError: {bad}: empty file" in on.stderr


def test_every_stage_script_uses_the_wrapper() -> None:
    for script in sorted((REPO / "stages").glob("*.py")):
        tree = ast.parse(script.read_text())
        guard = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
        call = ast.unparse(guard[0].body[0]) if guard else ""
        assert call in ("stage_main(main)", "stage_main(main, torch=False)"), script.name


def test_cli_reports_unforeseen_errors_with_a_location(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = _project(tmp_path)
    args = ["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    assert cli.main(["run", "ingest", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mmrec: error: {bad}: empty file") and "Traceback" not in err

    def broken(params, root):
        return [][1]  # a bug, not a user error

    monkeypatch.setattr("mmrec.data.stage.run", broken)
    assert cli.main(["run", "ingest", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mmrec: error: IndexError: list index out of range (at ")
    assert "test_hostile_errors.py:" in err  # the frame that raised
    with pytest.raises(IndexError):
        cli.main(["run", "ingest", "--debug", *args])


def test_recommend_output_strips_terminal_escapes(capsys) -> None:
    evil = "Lamp\x1b[2J\x1b]0;owned\x07 \x1b[31mred\x1b[0m\r\x08"
    item = {"item_idx": 1, "item_id": "I\x1b[1m1", "text": evil, "image_path": "img\x07.jpg",
            "timestamp": 0}
    cli.print_recommendations({"user_id": "u\x1b[5m", "user_idx": 0, "n_interactions": 1,
                               "mask_history": True, "model": "sasrec", "history": [item],
                               "recommendations": [{**item, "rank": 1, "score": 0.5}]})
    out = capsys.readouterr().out
    assert not any(ord(c) < 32 and c != "\n" or 0x7f <= ord(c) < 0xa0 for c in out)
    assert "[I 1] Lamp red" in out and "owned" not in out and "image: img .jpg" in out


def test_encoders_resolve_before_any_extraction(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "data" / "p" / "ingest" / "items.parquet"
    out.parent.mkdir(parents=True)
    pl.DataFrame({"item_idx": pl.Series([1, 2], dtype=pl.Int32), "text": ["a", "b"],
                  "image_path": ["x.jpg", "y.jpg"]}).write_parquet(out)
    built: list[str] = []
    monkeypatch.setattr(extract_stage, "build_encoder", lambda name, *a, **k: built.append(name))
    monkeypatch.delenv("MMREC_ALLOW_RANDOM_WEIGHTS", raising=False)
    params = parse_params({"device": "cpu", "data": {"name": "p"}, "extract": {
        "text": {"encoder": "hf:mmrec-test/no-such-model"},
        "image": {"encoder": "open_clip:ViT-B-32:none"}}})
    with pytest.raises(EncoderPreflightError) as err:
        extract_stage.run(params, tmp_path, progress=False)
    msg = str(err.value)
    assert "extract.text.encoder = 'hf:mmrec-test/no-such-model'" in msg and "Looked in:" in msg
    assert "extract.image.encoder = 'open_clip:ViT-B-32:none'" in msg and "RANDOM weights" in msg
    assert built == []  # failed before the first (text) encoder was even built
    assert not (tmp_path / "data" / "p" / "features").exists()
