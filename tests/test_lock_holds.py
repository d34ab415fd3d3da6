"""The committed dvc.lock and metrics/ are what `dvc repro` writes on a fresh clone: every stage
repeats bit for bit across processes (same machine, same thread count, same library versions),
so `git status` stays clean after a user's first run. When this fails after a code or params
change, run `dvc repro` on a fresh clone and commit its dvc.lock and metrics/."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import ROOT, copy_project, dvc


@pytest.mark.slow
def test_fresh_repro_writes_exactly_the_committed_lock_and_metrics(tmp_path: Path) -> None:
    proj = tmp_path / "clone"
    proj.mkdir()
    env = copy_project(proj)
    dvc(proj, env, "repro")
    changed = [f for f in ["dvc.lock", *(f"metrics/{p.name}" for p in sorted((ROOT / "metrics").glob("*.json")))]
               if (proj / f).read_bytes() != (ROOT / f).read_bytes()]
    assert not changed, (f"a fresh `dvc repro` rewrote {changed}: commit the outputs of a fresh "
                         "clone's `dvc repro` (or a stage no longer repeats across processes)")
