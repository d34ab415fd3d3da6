"""Streaming raw text files in line-aligned byte chunks, gzip or plain, truncation-tolerant.

Memory stays bounded by the chunk size: callers parse one chunk, keep the few columns they need
and drop the rest before the next chunk is read.

gzip is inflated by ISA-L (`isal.igzip`, about 5x the standard library's speed: gunzip was a
whole core's worth of the ingest benchmark). A damaged stream is handed back to the standard
library from where ISA-L stopped: ISA-L withholds its last partial buffer when it hits the
damage, and the standard library's messages are the ones reports have always quoted, so what
is kept and what is said about a damaged file do not depend on the decompressor.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

from isal import igzip, isal_zlib

from mmrec.data.report import FileReport, ReportEvents

CHUNK_BYTES = 8 << 20
BOM = b"\xef\xbb\xbf"


class TruncatedFileError(ValueError):
    """A compressed file ends early or is corrupt; names the file and the line reached."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _gunzip_pieces(path: Path, size: int) -> Iterator[bytes]:
    """Decompressed pieces of at most `size` bytes; damage raises the standard library's error.

    ISA-L reads while the stream is sound; on any error the file is re-read with `gzip`,
    skipping the bytes already yielded, so the data before the damage and the exception
    (EOFError, zlib.error, gzip.BadGzipFile) are exactly what `gzip` alone would give.
    """
    done = 0
    try:
        with igzip.open(path, "rb") as f:
            while piece := f.read1(size):
                done += len(piece)
                yield piece
        return
    except (EOFError, OSError, ValueError, isal_zlib.error):
        pass
    with gzip.open(path, "rb") as g:
        skip = done
        while skip:  # the same stream decodes to the same bytes: skip what ISA-L gave
            got = g.read1(min(skip, size))
            if not got:
                raise EOFError("gzip replay ended before the point ISA-L had reached")
            skip -= len(got)
        while piece := g.read1(size):
            yield piece


def _plain_pieces(f: BinaryIO, size: int) -> Iterator[bytes]:
    while piece := f.read1(size):
        yield piece


def iter_line_chunks(path: str | Path, rep: FileReport | ReportEvents,
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
    plain = None if _is_gzip(path) else open(path, "rb")
    pieces_of = _gunzip_pieces(path, chunk_bytes) if plain is None else _plain_pieces(plain, chunk_bytes)
    try:
        while True:
            try:
                # Pieces are what one read produced, so data decoded before a truncation
                # error is never lost inside a buffered read (see _gunzip_pieces).
                piece = next(pieces_of, b"")
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
        pieces_of.close()
        if plain is not None:
            plain.close()
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
