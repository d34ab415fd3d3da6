"""params.yaml as plain mappings: the profile merge `mmrec.config` validates afterwards, and the
few settings `mmrec recommend`'s fast path reads without validating (PyYAML only: importing
pydantic and every section's schema costs more than answering from the serving index)."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import yaml

# libyaml's loader when PyYAML was built with it: several times faster on params.yaml.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`: mappings merge key by key, other values replace."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def serving_view(path: str | os.PathLike) -> SimpleNamespace | None:
    """`data.name`, `train.models` and the `recommend` section of params.yaml with the dataset's
    profile merged in, as attributes (`mmrec.paths` reads `.data.name`); None when the file
    cannot be read or does not spell these out: the caller then loads and validates params."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.load(f, Loader=_LOADER)
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
    return SimpleNamespace(data=SimpleNamespace(name=name), train=SimpleNamespace(models=models), recommend=rec)
