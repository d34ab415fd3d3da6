"""Atomic file and folder output: a reader never sees half of what a stage writes.

Standard library only, so the serving fast path (`mmrec recommend`, which must not load numpy or
pyarrow) can write with the same guarantees as the stages; `mmrec.io` re-exports all of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; restored at once
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide, so probing it per write would race with threads.
_UMASK = _umask()
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file: a crash leaves the old file (or none) in place.
    The file gets the mode a plain `open()` would give (0644 under the usual umask), not
    mkstemp's 0600, so written files match the ones DVC restores from its cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; when the block succeeds it replaces `path`.

    All or nothing: a crash inside the block leaves the previous folder untouched (never new
    items beside old splits), and the swap itself is two renames, so at worst `path` is briefly
    absent, never mixed. Dotfiles of the old folder (DVC's .gitignore) are carried over.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, DIR_MODE)  # mkdtemp makes it private; the output is an ordinary folder
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
        if path.exists():
            for entry in path.iterdir():
                if entry.name.startswith(".") and not (tmp / entry.name).exists():
                    os.replace(entry, tmp / entry.name)
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)
