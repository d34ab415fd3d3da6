"""Item images: safe file names, local look-up, and a resumable, verifying URL downloader.

Layout: every fetched or shipped Amazon image lives at `<raw_dir>/images/<safe id>.jpg`. The
readers look there first, so a file that is already present is never fetched again (resume),
and a dataset can ship its images (the embedded sample does) with no URLs at all.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mmrec.io import atomic_path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(item_id: str, suffix: str = ".jpg") -> str:
    """A file name for `item_id` that is safe on every file system.

    Ids made only of [A-Za-z0-9._-] (all real asins) are used as they are; anything else is
    replaced by `_` and a short hash is appended, so two different ids never share a file.
    """
    item_id = str(item_id)
    clean = _UNSAFE.sub("_", item_id).strip("._")[:100]
    if clean != item_id or not clean:
        clean = f"{clean or 'id'}-{hashlib.sha1(item_id.encode()).hexdigest()[:10]}"
    return clean + suffix


def list_images(folder: Path) -> set[str]:
    """Names of the non-empty files in `folder` (one directory listing instead of N stats)."""
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_file() and p.stat().st_size > 0}


@dataclass
class DownloadReport:
    """What one downloader run did; failures are counted by reason with a few examples."""

    requested: int = 0
    already_present: int = 0
    downloaded: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _fail(self, item_id: str, url: str, reason: str, detail: str) -> None:
        with self._lock:
            self.failed[reason] = self.failed.get(reason, 0) + 1
            if len(self.examples) < 5:
                self.examples.append({"item_id": item_id, "url": url, "reason": reason,
                                      "detail": detail[:200]})

    def to_dict(self) -> dict:
        return {"requested": self.requested, "already_present": self.already_present,
                "downloaded": self.downloaded, "failed_total": sum(self.failed.values()),
                "failed": dict(sorted(self.failed.items())), "examples": self.examples}


class _Permanent(Exception):
    """A failure that retrying cannot fix (404, too large, not an image)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _fetch(url: str, timeout_s: float, max_bytes: int) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "mmrec-image-fetch/0.1"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise _Permanent("too_large", f"Content-Length {length} > {max_bytes}")
            data = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as err:
        if 400 <= err.code < 500 and err.code not in (408, 429):
            raise _Permanent(f"http_{err.code}", str(err)) from None
        raise
    if len(data) > max_bytes:
        raise _Permanent("too_large", f"body exceeds {max_bytes} bytes")
    return data


def _verify_image(data: bytes) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # full decode: a truncated JPEG fails here, not later in extraction
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise _Permanent("not_an_image", f"{type(err).__name__}: {err}") from None


def download_images(jobs: Iterable[tuple[str, str]], out_dir: str | Path, *, workers: int = 16,
                    timeout_s: float = 10.0, retries: int = 3, max_bytes: int = 10_000_000,
                    backoff_s: float = 0.5, progress: bool = True) -> DownloadReport:
    """Fetch `(item_id, url)` pairs into `out_dir/<safe_name(item_id)>`, once.

    Files already present are skipped (resume). Each fetch has a timeout; timeouts, connection
    errors and 5xx are retried `retries` times with exponential backoff; 4xx, bodies over
    `max_bytes` and bytes that PIL cannot decode fail at once. Files appear atomically, so an
    interrupted run never leaves a half image that a later run would take as done.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    present = list_images(out_dir)
    rep = DownloadReport()
    todo: list[tuple[str, str]] = []
    for item_id, url in jobs:
        rep.requested += 1
        if safe_name(item_id) in present:
            rep.already_present += 1
        else:
            todo.append((item_id, url))

    def one(job: tuple[str, str]) -> bool:
        item_id, url = job
        last = ""
        for attempt in range(retries + 1):
            try:
                data = _fetch(url, timeout_s, max_bytes)
                _verify_image(data)
                with atomic_path(out_dir / safe_name(item_id)) as tmp:
                    tmp.write_bytes(data)
                return True
            except _Permanent as err:
                rep._fail(item_id, url, err.reason, str(err))
                return False
            except ValueError as err:  # malformed URL: retrying cannot help
                rep._fail(item_id, url, "bad_url", str(err))
                return False
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as err:
                last = f"{type(err).__name__}: {err}"
                if attempt < retries:
                    time.sleep(backoff_s * (2 ** attempt))
        reason = "timeout" if "timed out" in last.lower() else "network"
        rep._fail(item_id, url, reason, f"after {retries + 1} attempts: {last}")
        return False

    if todo:
        from tqdm import tqdm

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(tqdm(pool.map(one, todo), total=len(todo), desc="images",
                                disable=not progress or len(todo) < 50))
        rep.downloaded = sum(results)
    return rep
