"""params.yaml as plain mappings: the profile merge `mmrec.config` validates afterwards, and the
few settings `mmrec recommend`'s fast path reads without validating (PyYAML only: importing
pydantic and every section's schema costs more than answering from the serving index)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace
from typing import Any

#: Beside params.yaml: the serving view last read from it, keyed by the file's identity, so a
#: fresh `mmrec recommend` skips importing PyYAML (~20 ms, a fifth of its time) until it changes.
VIEW_CACHE = os.path.join(".mmrec", "serving_view.json")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, other values replace."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _file_key(path: str | os.PathLike) -> list[Any]:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino]


def _cache_path(path: str | os.PathLike) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(path)), VIEW_CACHE)


def _read_cached(path: str | os.PathLike, key: list[Any]) -> dict[str, Any] | None:
    try:
        with open(_cache_path(path), encoding="utf-8") as f:
            cached = json.load(f)
        return cached["view"] if cached.get("key") == key else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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
    profile = (raw.get("profiles") or {}).get(name) if isinstance(raw.get("profiles"), dict) else None
    if isinstance(profile, dict):
        raw = deep_merge(raw, profile)
    train, rec = raw.get("train"), raw.get("recommend", {})
    models = train.get("models") if isinstance(train, dict) else None
    if not isinstance(models, list) or not isinstance(rec, dict):
        return None
    return {"name": name, "models": models, "recommend": rec}


def serving_view(path: str | os.PathLike) -> SimpleNamespace | None:
    """`data.name`, `train.models` and the `recommend` section of params.yaml with the dataset's
    profile merged in, as attributes (`mmrec.paths` reads `.data.name`); None when the file
    cannot be read or does not spell these out: the caller then loads and validates params.

    Read from `.mmrec/serving_view.json` beside the file while the file's path, size,
    modification time and inode are those recorded there; otherwise parsed and recorded."""
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
