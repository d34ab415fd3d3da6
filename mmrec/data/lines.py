"""Streaming raw text files in line-aligned byte chunks, gzip or plain, truncation-tolerant.

Memory stays bounded by the chunk size: callers parse one chunk, keep the few columns they need
and drop the rest before the next chunk is read.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterator

from mmrec.data.report import FileReport

CHUNK_BYTES = 8 << 20
BOM = b"\xef\xbb\xbf"


class TruncatedFileError(ValueError):
    """A compressed file ends early or is corrupt; names the file and the line reached."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def iter_line_chunks(path: str | Path, rep: FileReport,
                     chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield `(first_line_number, blob)` where blob holds whole lines (1-based numbering).

    gzip is detected by magic bytes, so `.json.gz` that is really plain text still reads. A
    truncated or corrupt gzip stream raises TruncatedFileError naming the file and the line
    where reading stopped (nothing would tell a user that most of the file was never read);
    with `rep.allow_truncated` it keeps every complete line before the damage instead and
    records one failure (`truncated_gzip` / `corrupt_gzip`). A UTF-8 byte-order mark at the
    start is dropped; a file with no bytes at all is an error.
    """
    path = Path(path)
    line_no = 1
    tail = b""
    broken: tuple[str, str] | None = None
    pieces: list[bytes] = []
    size = 0
    f = gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")
    try:
        while True:
            try:
                # read1 returns what one decompression step produced, so data decoded before a
                # truncation error is never lost inside a buffered read.
                piece = f.read1(chunk_bytes) if hasattr(f, "read1") else f.read(chunk_bytes)
            except EOFError as err:
                broken = ("truncated_gzip", str(err))
                break
            except (zlib.error, gzip.BadGzipFile, OSError) as err:
                broken = ("corrupt_gzip", str(err))
                break
            if not piece:
                break
            if line_no == 1 and not tail and not pieces and piece.startswith(BOM):
                piece = piece[len(BOM):]  # Windows editors write one; JSON parsers reject it
            pieces.append(piece)
            size += len(piece)
            # Gather at least chunk_bytes before yielding: read1 may return small pieces.
            if size < chunk_bytes:
                continue
            buf = tail + b"".join(pieces)
            pieces, size = [], 0
            cut = buf.rfind(b"\n")
            if cut < 0:
                tail = buf
                continue
            blob, tail = buf[: cut + 1], buf[cut + 1:]
            yield line_no, blob
            line_no += blob.count(b"\n")
    finally:
        f.close()
    tail += b"".join(pieces)
    if line_no == 1 and not tail and broken is None:
        raise ValueError(f"{path}: empty file (0 bytes{' after decompression' if _is_gzip(path) else ''}); "
                         "re-download it or point data.raw_dir at the complete dataset")
    if broken is not None:
        # The partial last line is part of the damage, not a separate malformed row.
        cut = tail.rfind(b"\n")
        partial, tail = tail[cut + 1:], tail[: cut + 1]
        n_complete = line_no - 1 + tail.count(b"\n")
        if not rep.allow_truncated:
            raise TruncatedFileError(
                f"{path}: {broken[0].replace('_', ' ')} at line {n_complete + 1} ({broken[1]}); "
                f"only the first {n_complete:,} complete lines are readable. Re-download the "
                "file, or set data.allow_truncated: true to ingest those lines (counted)")
        rep.rows_read += 1
        rep.fail(n_complete + 1, broken[0],
                 f"{broken[1]}; kept the {n_complete} complete lines before it"
                 f" (partial line of {len(partial)} bytes discarded)")
    if tail:
        if not tail.endswith(b"\n"):
            tail += b"\n"
        yield line_no, tail
