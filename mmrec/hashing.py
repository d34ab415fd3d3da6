"""Content hashes of files, standard library only (the serving fast path imports this)."""

from __future__ import annotations

import os


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    import hashlib  # here: `mmrec recommend`'s fast path imports this module and rarely hashes

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
