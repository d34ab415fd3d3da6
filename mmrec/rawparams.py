"""params.yaml as plain mappings: the profile merge `mmrec.config` validates afterwards, and the
few settings `mmrec recommend`'s fast path reads without validating (PyYAML only: importing
pydantic and every section's schema costs more than answering from the serving index)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

from mmrec.paths import check_data_name

#: Beside params.yaml: the serving view last read from it, keyed by the file's bytes, so a
#: fresh `mmrec recommend` skips importing PyYAML (~20 ms, a fifth of its time) until it changes.
VIEW_CACHE = os.path.join(".mmrec", "serving_view.json")


#: The profile of every dataset that has no profile of its own (real data).
DEFAULT_PROFILE = "default"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, other values replace."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def fill_unset(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` filled into a copy of `base` where `base` leaves a key unset (absent or null):
    mappings merge key by key, a value written in `base` always stays."""
    out = dict(base)
    for key, value in over.items():
        mine = out.get(key)
        if isinstance(value, dict) and isinstance(mine, dict):
            out[key] = fill_unset(mine, value)
        elif mine is None:
            out[key] = value
    return out


def dataset_profile(raw: dict[str, Any], name: Any) -> tuple[dict[str, Any], list[str]]:
    """The settings `profiles` gives dataset `name`, and the profiles they come from:
    `profiles.default` with `profiles.<name>` merged over it (either may be missing)."""
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict):
        return {}, []
    used = [p for p in (DEFAULT_PROFILE, name) if isinstance(p, str) and isinstance(profiles.get(p), dict)]
    merged: dict[str, Any] = {}
    for p in dict.fromkeys(used):
        merged = deep_merge(merged, profiles[p])
    return merged, list(dict.fromkeys(used))


def apply_profiles(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """params.yaml's raw mapping with its dataset's profile filled in where a section leaves a
    key unset: a value written in a section (by hand or by `dvc exp run -S`) always wins over a
    profile, so an override is never silently replaced. Returns (mapping, profiles used)."""
    data = raw.get("data")
    name = data.get("name", "sample") if isinstance(data, dict) else None
    prof, used = dataset_profile(raw, name)
    return (fill_unset(raw, prof) if prof else raw), used


def _file_key(path: str | os.PathLike) -> list[Any]:
    """The file's path and its whole content: params.yaml is a few KB, and comparing its bytes
    sees every edit, also one that keeps the size and the modification time (`cp -p`). Bytes
    as latin-1, one character per byte, so any file can be stored in JSON (and without
    hashlib, whose import costs as much as reading the file)."""
    with open(path, "rb") as f:
        return [os.path.abspath(path), f.read().decode("latin-1")]


def _cache_path(path: str | os.PathLike) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)), VIEW_CACHE)


def _read_cached(path: str | os.PathLike, key: list[Any]) -> dict[str, Any] | None:
    try:
        with open(_cache_path(path), encoding="utf-8") as f:
            cached = json.load(f)
        view = cached["view"] if cached.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return view if _well_formed(view) else None  # a damaged record is parsed again, never trusted


def _well_formed(view: Any) -> bool:
    """A view as `_parse_view` makes it: a valid data.name, a list of model names, a mapping."""
    if not isinstance(view, dict):
        return False
    try:
        check_data_name(view.get("name"))
    except ValueError:
        return False
    models = view.get("models")
    return (isinstance(models, list) and all(isinstance(m, str) for m in models)
            and isinstance(view.get("recommend"), dict))


def _write_cached(path: str | os.PathLike, key: list[Any], view: dict[str, Any]) -> None:
    """Best effort (a read-only project just parses every time), atomic (a reader never sees
    half a file)."""
    from mmrec.atomic import atomic_path  # only when writing: tempfile's imports cost a few ms

    try:
        text = json.dumps({"key": key, "view": view})
        with atomic_path(_cache_path(path)) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except (OSError, TypeError, ValueError):  # TypeError: a value JSON cannot hold (a YAML date)
        pass


def _parse_view(path: str | os.PathLike) -> dict[str, Any] | None:
    import yaml

    # libyaml's loader when PyYAML was built with it: several times faster on params.yaml.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=loader)
    except (OSError, yaml.YAMLError):
        return None
    data = raw.get("data") if isinstance(raw, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str):
        return None
    raw = apply_profiles(raw)[0]
    train, rec = raw.get("train"), raw.get("recommend", {})
    models = train.get("models") if isinstance(train, dict) else None
    view = {"name": name, "models": models, "recommend": rec}
    # Anything validation would refuse (`data.name: ../x`) is left to it: None sends the caller
    # to the validating path, which names the key.
    return view if _well_formed(view) else None


def serving_view(path: str | os.PathLike) -> SimpleNamespace | None:
    """`data.name`, `train.models` and the `recommend` section of params.yaml with the dataset's
    profile merged in, as attributes (`mmrec.paths` reads `.data.name`); None when the file
    cannot be read or does not spell these out: the caller then loads and validates params.

    Read from `.mmrec/serving_view.json` beside the file while the file's path and bytes are
    those recorded there; otherwise (or when the record is damaged) parsed and recorded."""
    try:
        key = _file_key(path)
    except OSError:
        return None
    view = _read_cached(path, key)
    if view is None:
        view = _parse_view(path)
        if view is None:
            return None
        _write_cached(path, key, view)
    return SimpleNamespace(data=SimpleNamespace(name=view["name"]), train=SimpleNamespace(models=view["models"]),
                           recommend=view["recommend"])
