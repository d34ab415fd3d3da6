"""The serving index (recommendations.sqlite): the same answers as the Parquet export, when it may
answer (fresh, enough items, same masking) and when not, and a fast path that imports nothing
heavy."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from evaluate_fakes import export_tiny_project, write_interactions

from mmrec.atomic import FILE_MODE
from mmrec.rawparams import serving_view
from mmrec.serving.index import INDEX_FILE, ExportUnusable, answer_from_index, export_inputs
from mmrec.serving.lookup import ITEM_VECTORS_FILE, RECS_FILE, USER_VECTORS_FILE

N_ITEMS, N_USERS = 15, 30
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def exported(tmp_path, monkeypatch):
    return export_tiny_project(tmp_path, monkeypatch, N_USERS, N_ITEMS)


def _ask(root, params, out, user, **kw):
    args = {"model": "sasrec", "user": user, "k": 6, "mask_history": True, **kw}
    return answer_from_index(out / INDEX_FILE, root, **args)


def test_index_answers_what_the_parquet_export_holds(exported):
    root, params, out = exported
    recs = pl.read_parquet(out / RECS_FILE)
    users = pl.read_parquet(out / USER_VECTORS_FILE)
    items = {r["item_idx"]: r for r in pl.read_parquet(out / ITEM_VECTORS_FILE).to_dicts()}
    for u in users.to_dicts():
        for k in (1, 4, 6):
            got = _ask(root, params, out, u["user_id"], k=k)
            mine = recs.filter(pl.col("user_id") == u["user_id"]).head(k)
            assert [r["item_idx"] for r in got["recommendations"]] == mine["item_idx"].to_list()
            assert [r["score"] for r in got["recommendations"]] == mine["score"].to_list()   # float32, exact
            assert [r["item_id"] for r in got["recommendations"]] == mine["item_id"].to_list()
            assert [r["rank"] for r in got["recommendations"]] == list(range(1, mine.height + 1))
        assert got["user_idx"] == u["user_idx"] and got["n_interactions"] == u["n_interactions"]
        assert [h["item_idx"] for h in got["history"]] == u["history"]
        assert [h["timestamp"] for h in got["history"]] == u["history_timestamp"]
        h = got["history"][-1]
        assert (h["text"], h["image_path"]) == (items[h["item_idx"]]["text"], items[h["item_idx"]]["image_path"])
    assert got["source"] == "export" and got["mask_history"] is True


def test_index_says_why_it_cannot_answer(exported):
    root, params, out = exported
    uid = pl.read_parquet(out / USER_VECTORS_FILE)["user_id"][0]
    cases = [({"k": 7}, "holds the top 6 items per user, fewer than -k 7"),
             ({"mask_history": False}, "exported with history masked"),
             ({"model": "kdsr"}, "exported for model 'sasrec', not 'kdsr'")]
    for change, why in cases:
        with pytest.raises(ExportUnusable, match=why):
            _ask(root, params, out, uid, **change)
    with pytest.raises(KeyError, match=r"user 'carol' is not in .*recommendations.sqlite.*known ids look like: U"):
        _ask(root, params, out, "carol")
    with pytest.raises(ExportUnusable, match="recommendations.sqlite: not found"):
        answer_from_index(out.parent / "kdsr" / INDEX_FILE, root, model="sasrec", user=uid, k=6,
                          mask_history=True)
    (out / INDEX_FILE).write_bytes(b"not a database" * 100)
    with pytest.raises(ExportUnusable, match="not a readable index"):
        _ask(root, params, out, uid)


def test_staleness_follows_content_not_mtime(exported):
    root, params, out = exported
    uid = pl.read_parquet(out / USER_VECTORS_FILE)["user_id"][0]
    model_pt = export_inputs(params, "sasrec", root)["model.pt"]
    st = model_pt.stat()
    os.utime(model_pt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # `dvc checkout`: same bytes
    _ask(root, params, out, uid)
    original = model_pt.read_bytes()
    model_pt.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))     # retrained: same size
    os.utime(model_pt, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    with pytest.raises(ExportUnusable, match="stale: model.pt changed since the export"):
        _ask(root, params, out, uid)
    model_pt.write_bytes(original)
    write_interactions(root, N_USERS + 1, N_ITEMS)                      # re-ingested
    with pytest.raises(ExportUnusable, match=r"stale: .*interactions.parquet"):
        _ask(root, params, out, uid)


def test_export_bytes_depend_on_contents_and_a_verified_hash_is_not_read_again(exported, monkeypatch):
    """A re-export after `dvc checkout`-style mtime changes writes the same bytes (so a fresh
    clone's dvc.lock repeats); the hash memo outside the output spares a lookup from reading an
    input whose size and mtime are those it was verified under."""
    import mmrec.serving.export as export
    import mmrec.serving.index as index

    root, params, out = exported
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    for f in export_inputs(params, "sasrec", root).values():
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    export.run(params, root, "sasrec")
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    uid = pl.read_parquet(out / USER_VECTORS_FILE)["user_id"][0]
    _ask(root, params, out, uid)                                        # verified: remembered
    monkeypatch.setattr(index, "file_sha256", lambda p: pytest.fail(f"{p} hashed again"))
    _ask(root, params, out, uid)
    assert (root / index.HASH_MEMO).is_file()


def test_feature_and_teacher_files_are_inputs(tmp_path, monkeypatch):
    """A model's item vectors depend on its frozen features and teacher: replacing either
    without retraining makes the export stale, and a moved project stays fresh."""
    feats = tmp_path / "data/tiny/features/text/text-enc.parquet"
    teacher = tmp_path / "data/tiny/teacher/text/text-enc/codebook.npy"
    for path in (feats, teacher):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"v1")
    root, params, out = export_tiny_project(tmp_path, monkeypatch, N_USERS, N_ITEMS,
                                            modalities=["text"], teachers=["text"])
    uid = pl.read_parquet(out / USER_VECTORS_FILE)["user_id"][0]
    _ask(root, params, out, uid)
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    _ask(moved, params, moved / out.relative_to(tmp_path), uid)
    moved.rename(tmp_path)
    teacher.write_bytes(b"v2, retrained teacher")
    with pytest.raises(ExportUnusable, match="stale: teacher/text/text-enc/codebook.npy changed"):
        _ask(root, params, out, uid)
    teacher.write_bytes(b"v1")
    feats.write_bytes(b"v3")
    with pytest.raises(ExportUnusable, match="stale: features/text/text-enc.parquet changed"):
        _ask(root, params, out, uid)


def test_serving_view_reads_the_profiled_settings(tmp_path):
    path = tmp_path / "params.yaml"
    raw = {"data": {"name": "tiny"}, "train": {"models": ["sasrec"]}, "recommend": {"k": 20},
           "profiles": {"tiny": {"recommend": {"mask_history": False}}, "other": {"recommend": {"k": 3}}}}
    path.write_text(yaml.safe_dump(raw))
    view = serving_view(path)
    assert view.data.name == "tiny" and view.train.models == ["sasrec"]
    assert view.recommend == {"k": 20, "mask_history": False}
    for broken in ({"train": {"models": ["sasrec"]}}, {"data": {"name": "tiny"}}, [1, 2]):
        path.write_text(yaml.safe_dump(broken))
        assert serving_view(path) is None, broken
    path.write_text("data: {name: [")
    assert serving_view(path) is None
    assert serving_view(tmp_path / "missing.yaml") is None


def test_fast_path_answers_without_heavy_imports(exported):
    """`mmrec recommend --user` in a fresh interpreter: the same answer as in-process, and
    numpy, pyarrow, polars, pydantic and torch never imported (what keeps it near Python's
    start-up time)."""
    root, params, out = exported
    (root / "params.yaml").write_text(yaml.safe_dump(
        {"data": {"name": "tiny"}, "device": "cpu", "train": {"models": ["sasrec", "kdsr"]},
         "recommend": {"k": 6, "row_group_size": 4}}))
    uid = pl.read_parquet(out / USER_VECTORS_FILE)["user_id"][3]
    code = ("import io, json, sys, contextlib\n"
            "import mmrec.cli as cli\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            f"    rc = cli.main(['recommend', '--model', 'sasrec', '--user', {uid!r}, '-k', '5', '--json',\n"
            f"                   '--params', {str(root / 'params.yaml')!r}, '--root', {str(root)!r}])\n"
            "heavy = sorted(m for m in ('numpy', 'pyarrow', 'polars', 'pydantic', 'torch', 'yaml')\n"
            "               if m in sys.modules)\n"
            "print(json.dumps({'rc': rc, 'heavy': heavy, 'answer': json.loads(buf.getvalue())}))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    want = _ask(root, params, out, uid, k=5)
    for run in ("first", "second"):  # the second reads the serving view the first recorded
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        got = json.loads(done.stdout)
        assert got["rc"] == 0 and got["heavy"] == ([] if run == "second" else ["yaml"]), (run, got["heavy"])
        assert done.stderr == ""
        assert got["answer"] == json.loads(json.dumps(want))


def test_serving_view_is_recorded_and_reread_until_params_change(tmp_path, monkeypatch):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "tiny"}, "train": {"models": ["sasrec"]},
                                    "recommend": {"k": 20}}))
    first = serving_view(path)
    record = tmp_path / ".mmrec" / "serving_view.json"
    assert stat.S_IMODE(record.stat().st_mode) == FILE_MODE  # like any file the project writes
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now fails: only the record can answer
    assert serving_view(path) == first
    monkeypatch.undo()
    # an edit (new size and modification time) is parsed again, and recorded in turn
    path.write_text(yaml.safe_dump({"data": {"name": "other"}, "train": {"models": ["sasrec", "odmt"]},
                                    "recommend": {"k": 7}}))
    second = serving_view(path)
    assert second.data.name == "other" and second.recommend == {"k": 7}
    monkeypatch.setitem(sys.modules, "yaml", None)
    assert serving_view(path) == second
    monkeypatch.undo()
    # nowhere to record it (a file where the folder would go): still answers, every time by parsing
    (tmp_path / ".mmrec" / "serving_view.json").unlink()
    (tmp_path / ".mmrec").rmdir()
    (tmp_path / ".mmrec").write_text("not a folder")
    assert serving_view(path) == second
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mmrec", "params.yaml"]
