"""`mmrec recommend`'s fast path reads params.yaml without validating it, through a view cached in
.mmrec/serving_view.json: the view must see every edit, refuse what validation refuses and
survive a damaged record."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from mmrec.config import ParamsError, parse_params
from mmrec.paths import check_data_name
from mmrec.rawparams import VIEW_CACHE, serving_view


def _write(path: Path, name: str, k: int = 5) -> None:
    path.write_text(yaml.safe_dump({"data": {"name": name}, "train": {"models": ["sasrec"]},
                                    "recommend": {"k": k}}))


def test_a_same_size_edit_with_the_mtime_kept_is_seen(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    _write(params, "arts", k=5)
    assert serving_view(params).data.name == "arts"
    # `cp -p` of an edited copy: same size, same modification time (and a fresh inode is not
    # needed to fool a size+mtime key: keep it by writing in place and restoring the times)
    st = params.stat()
    other = tmp_path / "edited.yaml"
    _write(other, "toys", k=7)
    assert other.stat().st_size == st.st_size
    with open(params, "r+b") as f:  # in place: the inode stays too
        f.write(other.read_bytes())
    os.utime(params, ns=(st.st_atime_ns, st.st_mtime_ns))
    view = serving_view(params)
    assert view.data.name == "toys" and view.recommend == {"k": 7}
    shutil.copy2(tmp_path / "edited.yaml", params)  # and the literal `cp -p`
    assert serving_view(params).data.name == "toys"


@pytest.mark.parametrize("name", ["..", ".", "../../etc", "/tmp/x", ".hidden", "a/b", "x" * 101, "a\n"])
def test_names_that_validation_refuses_are_refused_by_the_view(tmp_path: Path, name: str) -> None:
    with pytest.raises(ParamsError, match=r"data\.name: "):
        parse_params({"data": {"name": name}})
    with pytest.raises(ValueError):
        check_data_name(name)
    params = tmp_path / "params.yaml"
    _write(params, name)
    assert serving_view(params) is None  # the caller then validates params and names the key


def test_a_recorded_view_with_a_bad_name_is_not_trusted(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    _write(params, "arts")
    first = serving_view(params)
    record = tmp_path / VIEW_CACHE
    record.write_text(record.read_text().replace('"name": "arts"', '"name": "../../etc"'))
    assert serving_view(params) == first


@pytest.mark.parametrize("damage", [
    "", "{", "[]", "null", '{"key": 1}', '{"view": {}}', "KEY_NO_VIEW", "KEY_VIEW_LIST",
    "KEY_VIEW_NO_MODELS", "KEY_VIEW_MODELS_NOT_LIST", "KEY_VIEW_REC_NOT_DICT"])
def test_a_malformed_view_file_is_rebuilt_never_a_crash(tmp_path: Path, damage: str) -> None:
    import json

    params = tmp_path / "params.yaml"
    _write(params, "arts")
    first = serving_view(params)
    record = tmp_path / VIEW_CACHE
    good = json.loads(record.read_text())
    key, view = good["key"], good["view"]
    text = {"KEY_NO_VIEW": {"key": key},
            "KEY_VIEW_LIST": {"key": key, "view": [1, 2]},
            "KEY_VIEW_NO_MODELS": {"key": key, "view": {"name": "arts", "recommend": {}}},
            "KEY_VIEW_MODELS_NOT_LIST": {"key": key, "view": {**view, "models": 3}},
            "KEY_VIEW_REC_NOT_DICT": {"key": key, "view": {**view, "recommend": [1]}}}.get(damage, damage)
    record.write_text(text if isinstance(text, str) else json.dumps(text))
    assert serving_view(params) == first
    assert json.loads(record.read_text()) == good  # rebuilt
