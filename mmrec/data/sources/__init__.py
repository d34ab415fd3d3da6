"""The dataset-reader registry: `data.source` names one reader; every module in this folder is one.

A reader turns the raw files under `data.raw_dir` into two things the ingest stage
(mmrec.data.stage) filters, splits and writes:

- items: one row per item, columns `item_id` (string), `text` (the composed item text, "" when
  none), `has_text`, `image_path` (local, relative to the repo root as data.raw_dir is written;
  null when none), `image_url` (null unless the reader downloads images), then any raw metadata
  columns worth keeping;
- interactions: lazy chunks of `user_id`, `item_id` (strings), `_tfine` (int64 time in the
  reader's unit: `time_per_second` units make a second) and `_order` (the file line, for ties and
  error messages).

Every row a reader cannot use is a counted skip in the report (`report.file(path).fail(...)`),
never a silent drop.

**Adding a reader** needs no edit outside its own module, its params and its tests: put a module
in `mmrec/data/sources/` that calls `register_source(Source(name=..., read=..., params=...))` at
import (every module here is imported when a name is looked up), declare its settings as a
pydantic model in `params` (they are read from `data.<name>` in params.yaml and validated when
params load), and import heavy libraries (polars...) inside `read`, so loading params stays light.
`table.py` is the example to copy.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

from pydantic import BaseModel

from mmrec.registry import Registry

if TYPE_CHECKING:  # only for annotations: importing polars here would load it with every params file
    import polars as pl

    from mmrec.data.report import IngestReport


@dataclass
class ReadRequest:
    """What a reader is given: the `data` section, its own validated section (`data.<name>`,
    None when it declares no params), where the raw files are, and the report to count in."""

    data: Any                       # mmrec.data.params.DataParams
    options: Optional[BaseModel]
    raw_dir: Path
    image_prefix: str               # data.raw_dir as the user wrote it: image paths start with it
    report: "IngestReport"


@dataclass
class SourceData:
    """What a reader returns (columns in the module docstring)."""

    items: "pl.DataFrame"
    interactions: Iterator["pl.DataFrame"]
    time_per_second: int = 1
    extra: dict[str, Any] = field(default_factory=dict)   # more fields for report.json


@dataclass(frozen=True)
class Source:
    """One registered reader."""

    name: str
    read: Callable[[ReadRequest], SourceData]
    params: Optional[type[BaseModel]] = None   # schema of data.<name>; None: no section
    downloads_images: bool = False             # items carry image_url that ingest may fetch
    summary: str = ""                           # one line for docs and error messages


SOURCES: Registry[Source] = Registry("data source")
_loaded = False


def register_source(source: Source) -> Source:
    """Register `source` under its name (twice is an error); returns it."""
    SOURCES.register(source.name)(lambda: source)
    return source


def _load_all() -> None:
    """Import every reader module in this folder once: each registers itself."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")


def source_names() -> list[str]:
    _load_all()
    return SOURCES.names()


def get_source(name: str) -> Source:
    """The registered reader `name`; an unknown name raises KeyError listing the known ones."""
    _load_all()
    return SOURCES.build(name)
