"""Where every artifact lives, derived from params (the same layout dvc.yaml templates)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol


class Layout(Protocol):
    """What the path helpers read of the pipeline's params: `data.name` and the encoder names
    under `extract`. Structural, so this bottom layer never imports `mmrec.config`; the full
    `Params` fits, and so does any object with these two sections."""

    @property
    def data(self) -> Any: ...

    @property
    def extract(self) -> Any: ...


def encoder_slug(encoder: str) -> str:
    """A file-name-safe form of an encoder name: `open_clip:ViT-B-32:openai` -> `open_clip-vit-b-32-openai`."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", encoder.strip()).strip("-.").lower()
    if not slug:
        raise ValueError(f"encoder name {encoder!r} has no usable characters")
    return slug


def dataset_dir(p: Layout, root: str | Path = ".") -> Path:
    return Path(root) / "data" / p.data.name


def ingest_dir(p: Layout, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "ingest"


def features_dir(p: Layout, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "features"


def feature_path(p: Layout, modality: str, root: str | Path = ".") -> Path:
    """`features/<modality>-<encoder slug>.parquet` for modality `text` or `image`."""
    enc = getattr(p.extract, modality).encoder
    return features_dir(p, root) / f"{modality}-{encoder_slug(enc)}.parquet"


def teacher_dir(p: Layout, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "teacher"


def teacher_modality_dir(p: Layout, modality: str, root: str | Path = ".") -> Path:
    enc = getattr(p.extract, modality).encoder
    return teacher_dir(p, root) / f"{modality}-{encoder_slug(enc)}"


def model_dir(p: Layout, model: str, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "models" / model


def results_dir(p: Layout, model: str, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "results" / model


def report_dir(p: Layout, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "report"
