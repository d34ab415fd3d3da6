"""Where every artifact lives, derived from params (the same layout dvc.yaml templates)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Protocol, Sequence

from mmrec.registry import did_you_mean


class Layout(Protocol):
    """What the path helpers read of the pipeline's params: `data.name` and the encoder names
    under `extract`. Structural, so this bottom layer never imports `mmrec.config`; the full
    `Params` fits, and so does any object with these two sections."""

    @property
    def data(self) -> Any: ...

    @property
    def extract(self) -> Any: ...


_DATA_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def check_data_name(name: object) -> str:
    """`name` when it is a valid `data.name`, else ValueError saying why.

    Outputs go to data/<name>/: one plain folder name (letters, digits, `_`, `-`, `.`, at most
    100), never `..`, `.`, a hidden folder or a path. Params validation and `mmrec recommend`'s
    fast path (which reads params.yaml without validating it) both apply this one rule."""
    if not isinstance(name, str) or not _DATA_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain folder name: use 1 to 100 letters, digits, "
                         "'_', '-' and '.'")
    if name.startswith("."):
        raise ValueError("must not start with '.': outputs would land outside "
                         "data/ or in a hidden folder; use letters, digits, '_', '-' and '.'")
    return name


def encoder_slug(encoder: str) -> str:
    """A file-name-safe form of an encoder name: `open_clip:ViT-B-32:openai` -> `open_clip-vit-b-32-openai`."""
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", encoder.strip()).strip("-.").lower()
    if not slug:
        raise ValueError(f"encoder name {encoder!r} has no usable characters")
    return slug


def dataset_dir(p: Layout, root: str | Path = ".") -> Path:
    return Path(root) / "data" / p.data.name


def resolved_params_path(p: Layout, root: str | Path = ".") -> Path:
    """`data/<name>/params.yaml`: params.yaml as the stages use it (profiles applied, train entries
    resolved), written by the `params` stage; dvc.yaml tracks every stage's keys in it."""
    return dataset_dir(p, root) / "params.yaml"


def ingest_dir(p: Layout, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "ingest"


def features_dir(p: Layout, root: str | Path = ".") -> Path:
    """`data/<name>/features/`: one sub-folder per modality (each the output of `extract@<modality>`)."""
    return dataset_dir(p, root) / "features"


def modality_features_dir(p: Layout, modality: str, root: str | Path = ".") -> Path:
    """`features/<modality>/`: the DVC output of `extract@<modality>` (feature file + summary.json)."""
    return features_dir(p, root) / modality


def encoder_stem(p: Layout, modality: str) -> str:
    """`<modality>-<encoder slug>`: the name every per-encoder artifact of a modality carries, so
    a new encoder never reads an old encoder's files."""
    return f"{modality}-{encoder_slug(getattr(p.extract, modality).encoder)}"


def feature_path(p: Layout, modality: str, root: str | Path = ".") -> Path:
    """`features/<modality>/<modality>-<encoder slug>.parquet` for modality `text` or `image`."""
    return modality_features_dir(p, modality, root) / f"{encoder_stem(p, modality)}.parquet"


#: The extract stage's record beside each modality's feature file (features/<modality>/).
SUMMARY_FILE = "summary.json"


def modality_status(p: Layout, modality: str, root: str | Path = ".") -> str:
    """What extraction left for one modality under the configured encoder:

    - `present`: the feature file exists and summary.json does not say otherwise;
    - `absent`: extraction ran and found no item with this modality (summary.json `skipped`),
      the explicit output of a dataset without it (e.g. text-only Amazon data): not an error;
    - `missing`: neither; extraction did not run, failed, or ran with another encoder.
    """
    summary = modality_features_dir(p, modality, root) / SUMMARY_FILE
    try:
        record = json.loads(summary.read_text()) if summary.exists() else {}
    except (OSError, ValueError) as err:
        raise ValueError(f"{summary}: unreadable ({err}); re-run the extract stage") from None
    if isinstance(record, dict) and "skipped" in record:
        return "absent"
    return "present" if feature_path(p, modality, root).exists() else "missing"


def extract_cache_path(p: Layout, modality: str, root: str | Path = ".") -> Path:
    """`cache/extract/<modality>-<encoder slug>.parquet`: vectors keyed by content hash, kept
    outside every DVC output (DVC deletes a stage's outputs before it runs), so a re-run encodes
    only the items whose text or image bytes changed."""
    return dataset_dir(p, root) / "cache" / "extract" / f"{encoder_stem(p, modality)}.parquet"


def image_manifest_path(p: Layout, root: str | Path = ".") -> Path:
    """`ingest/images.parquet`: item_idx, path, size, sha256 of every item's picture."""
    return ingest_dir(p, root) / "images.parquet"


def teacher_dir(p: Layout, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "teacher"


def modality_teacher_dir(p: Layout, modality: str, root: str | Path = ".") -> Path:
    """`teacher/<modality>/`: the DVC output of `teacher@<modality>`."""
    return teacher_dir(p, root) / modality


def teacher_modality_dir(p: Layout, modality: str, root: str | Path = ".") -> Path:
    """`teacher/<modality>/<modality>-<encoder slug>/`: one modality's teacher files."""
    return modality_teacher_dir(p, modality, root) / encoder_stem(p, modality)


def model_dir(p: Layout, model: str, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "models" / model


#: In results_dir, beside metrics.json: every evaluated user's rank of their target (intervals).
RANKS_FILE = "ranks.parquet"


def check_model(models: Sequence[str], model: str) -> None:
    """KeyError unless `model` is one of `models` (train.models), naming the known entries."""
    if model not in models:
        raise KeyError(f"model {model!r} is not in train.models; known: {', '.join(models)}"
                       f"{did_you_mean(model, models)}")


def trained_models(p: Layout, models: Sequence[str], root: str | Path = ".") -> tuple[list[str], list[str]]:
    """(entries of `models` with a models/<entry>/model.pt, entries without one), in order: what
    `evaluate` and `recommend` run for and skip when no model is named."""
    have = [m for m in models if (model_dir(p, m, root) / "model.pt").exists()]
    return have, [m for m in models if m not in have]


def results_dir(p: Layout, model: str, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "results" / model


def recommend_dir(p: Layout, model: str, root: str | Path = ".") -> Path:
    """`recommendations/<model>/`: the DVC output of `recommend@<model>` (every user's top-k,
    item and user vectors)."""
    return dataset_dir(p, root) / "recommendations" / model


def report_dir(p: Layout, root: str | Path = ".") -> Path:
    return dataset_dir(p, root) / "report"


def headline_path(model: str, root: str | Path = ".") -> Path:
    """`metrics/<model>.json`: the few headline numbers git tracks (`dvc metrics`, `dvc exp show`).

    Not under data/<name>/ (git-ignored): experiments commit these files, so comparisons work
    against HEAD and between experiments."""
    return Path(root) / "metrics" / f"{model}.json"
