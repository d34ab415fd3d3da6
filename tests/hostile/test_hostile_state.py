"""Half-written state: ingest outputs appear all together or not at all; names and sizes that
would write outside data/ or exhaust memory are refused when params are loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mmrec.config import ParamsError, parse_params
from mmrec.data import stage
from mmrec.paths import ingest_dir

T0 = 1_500_000_000


def _raw(raw: Path) -> Path:
    raw.mkdir(parents=True)
    (raw / "meta_Toys.json").write_text("".join(json.dumps({"asin": f"I{i}", "title": f"toy {i}"}) + "\n"
                                                for i in range(6)))
    (raw / "Toys.json").write_text("".join(
        json.dumps({"reviewerID": f"U{u}", "asin": f"I{(u + k) % 6}",
                    "unixReviewTime": T0 + 3600 * (10 * u + k)}) + "\n"
        for u in range(5) for k in range(4 + u % 2)))
    return raw


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_crash_between_writes_leaves_the_old_outputs(tmp_path: Path, monkeypatch) -> None:
    raw = _raw(tmp_path / "raw")
    p1 = parse_params({"data": {"name": "s", "raw_dir": str(raw), "require": ["text"],
                                "min_user_interactions": 3}})
    stage.run(p1, root=tmp_path)
    out = ingest_dir(p1, tmp_path)
    (out / ".gitignore").write_text("/items.parquet\n")  # what DVC keeps beside its outputs
    before = _digest(out)

    calls = []
    real = stage.write_parquet

    def crash_on_second(table, path, meta=None):
        calls.append(Path(path).name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(table, path, meta)

    monkeypatch.setattr(stage, "write_parquet", crash_on_second)
    p2 = parse_params({"data": {"name": "s", "raw_dir": str(raw), "require": ["text"],
                                "min_user_interactions": 5}})  # different outputs
    with pytest.raises(OSError, match="No space left"):
        stage.run(p2, root=tmp_path)
    # the crash came mid-way: items and interactions (by row group) were written, splits was not
    assert calls == ["items.parquet", "splits.parquet"]
    assert _digest(out) == before  # no new items.parquet beside old splits
    assert sorted(p.name for p in out.parent.iterdir()) == ["ingest"]  # no temp folder left

    monkeypatch.setattr(stage, "write_parquet", real)
    stage.run(p2, root=tmp_path)
    after = _digest(out)
    assert after[".gitignore"] == before[".gitignore"]  # DVC's file survives the swap
    assert after["interactions.parquet"] != before["interactions.parquet"]
    assert sorted(after) == [".gitignore", "images.parquet", "interactions.parquet", "items.parquet",
                             "report.json", "splits.parquet"]


@pytest.mark.parametrize("name", ["..", ".", "../../etc", "/tmp/x", ".hidden", "a/b"])
def test_data_name_cannot_leave_data_dir(name: str) -> None:
    with pytest.raises(ParamsError, match=r"data\.name: "):
        parse_params({"data": {"name": name}})


def test_sizes_are_bounded() -> None:
    with pytest.raises(ParamsError, match=r"train\.common\.max_len: Input should be less than or "
                                          r"equal to 4096 \(got 100000\)"):
        parse_params({"train": {"common": {"max_len": 100_000}}})
    with pytest.raises(ParamsError, match=r"data\.images\.workers: Input should be less than or "
                                          r"equal to 64"):
        parse_params({"data": {"images": {"workers": 1000}}})


def test_a_second_stage_in_the_same_project_is_refused_naming_the_holder(tmp_path):
    """`mmrec run` (and every stage script) holds data/.mmrec.lock: a concurrent stage fails at
    once with the holder's pid instead of writing the same outputs."""
    import os
    import subprocess
    import sys

    from mmrec import cli
    from mmrec.io import LOCK_FILE, StageLockedError, stage_lock

    with stage_lock(tmp_path):
        assert f"pid {os.getpid()}" in (tmp_path / LOCK_FILE).read_text()
        with pytest.raises(StageLockedError, match=rf"another mmrec stage is running .*pid {os.getpid()}"):
            with stage_lock(tmp_path):
                pass
        # the CLI refuses before touching any output (params are validated first: defaults suffice)
        (tmp_path / "params.yaml").write_text("data: {name: locked}\n")
        code = subprocess.run([sys.executable, "-m", "mmrec.cli", "run", "report", "--params",
                               str(tmp_path / "params.yaml"), "--root", str(tmp_path)],
                              capture_output=True, text=True)
        assert code.returncode == 2 and "another mmrec stage is running" in code.stderr
        assert not (tmp_path / "data" / "locked").exists()
    with stage_lock(tmp_path):  # released with the holder
        pass
    assert cli.main(["run", "report", "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]) == 0


def test_one_model_stages_of_different_entries_run_side_by_side(tmp_path):
    """`mmrec run train A` and `mmrec run train B` (or evaluate) write disjoint outputs and share
    the project lock; the same entry twice, or a stage writing shared outputs, is refused, naming
    the holder either way."""
    import os

    from mmrec.io import StageLockedError, stage_lock

    me = rf"pid {os.getpid()}"
    with stage_lock(tmp_path, entry="odmt"):
        with stage_lock(tmp_path, entry="sasrec"):                      # a second model: side by side
            with pytest.raises(StageLockedError, match=rf"\.mmrec\.odmt\.lock: another mmrec stage .*{me}"):
                with stage_lock(tmp_path, entry="odmt"):
                    pass
            with pytest.raises(StageLockedError, match=rf"data/\.mmrec\.lock: another mmrec stage .*{me}"):
                with stage_lock(tmp_path):                               # ingest, report, all of train
                    pass
        with pytest.raises(StageLockedError, match=me):
            with stage_lock(tmp_path):
                pass
    with stage_lock(tmp_path):                                           # every holder gone
        with pytest.raises(StageLockedError, match=rf"data/\.mmrec\.lock: another mmrec stage .*{me}"):
            with stage_lock(tmp_path, entry="sasrec"):
                pass
    with stage_lock(tmp_path, entry="sasrec"):
        pass
