"""params.yaml: one validated object. Each package owns the schema of its own section."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from mmrec.data.params import DataParams
from mmrec.evaluate.params import EvaluateParams
from mmrec.features.params import ExtractParams
from mmrec.teacher.params import TeacherParams
from mmrec.train.params import TrainParams


class ParamsError(ValueError):
    """params.yaml is invalid; the message names every offending key."""


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 2026
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataParams = DataParams()
    extract: ExtractParams = ExtractParams()
    teacher: TeacherParams = TeacherParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem, each starting with the dotted key, e.g. `data.max_history`."""
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg} (got {e.get('input')!r})" if e["type"] != "extra_forbidden"
                     else f"  {key}: {msg}")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; raise ParamsError naming each bad key."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, source)) from None


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found (run from the project root or pass a path)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    return parse_params(raw or {}, str(path))
