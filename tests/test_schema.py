"""Every params schema refuses what every section must refuse (mmrec.schema)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from pydantic import BaseModel, ValidationError

import mmrec
from mmrec.schema import OpenParams, StrictParams


def _mmrec_schemas() -> list[type[BaseModel]]:
    # import every module, so a schema declared anywhere in the package is seen
    for info in pkgutil.walk_packages(mmrec.__path__, "mmrec."):
        if info.name != "mmrec.cli":
            importlib.import_module(info.name)
    found, todo = [], list(BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("mmrec.") and cls.__module__ != "mmrec.schema":
            found.append(cls)
    return found


def test_every_schema_derives_from_a_params_base():
    schemas = _mmrec_schemas()
    assert len(schemas) > 20  # the sections, the readers' settings, every model's config
    loose = sorted(f"{c.__module__}.{c.__qualname__}" for c in schemas
                   if not issubclass(c, (StrictParams, OpenParams)))
    assert not loose, f"params schemas must derive from mmrec.schema's bases: {loose}"
    assert all(c.model_config["allow_inf_nan"] is False for c in schemas)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_bases_refuse_non_finite_numbers(value):
    class Strict(StrictParams):
        x: float = 0.0

    class Open(OpenParams):
        x: float = 0.0

    for cls in (Strict, Open):
        with pytest.raises(ValidationError, match="finite"):
            cls(x=value)


def test_strict_refuses_unknown_keys_and_open_keeps_them():
    class Strict(StrictParams):
        x: int = 0

    class Open(OpenParams):
        x: int = 0

    with pytest.raises(ValidationError, match="y"):
        Strict(y=1)
    assert Open(y=1).model_extra == {"y": 1}
