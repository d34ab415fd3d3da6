"""mmrec.teacher: the KDSR teacher (denoising autoencoder, correlations, codebook).

The public names load lazily (PEP 562), so `mmrec.config`, which imports `mmrec.teacher.params`,
does not pull in torch and faiss.

Layer: floor 2, beside `features` (never importing it: the extract section is read structurally);
may import `data` and the bottom layer only.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["IGNORE_CODE", "PairTeacher", "correlation", "dissected", "load_teacher", "nearest_code"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = importlib.import_module("mmrec.teacher.targets")
        return getattr(module, name)
    raise AttributeError(f"module 'mmrec.teacher' has no attribute {name!r}")
