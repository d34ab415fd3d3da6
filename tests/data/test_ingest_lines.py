import gzip
import json

import polars as pl

from mmrec.data.jsonl import scan_json_columns
from mmrec.data.lines import iter_line_chunks
from mmrec.data.report import FileReport

SCHEMA = {"u": pl.String, "i": pl.String, "t": pl.Int64}


def _lines(n):
    return [json.dumps({"u": f"u{k % 7}", "i": f"i{k}", "t": k, "x": "y" * (k % 13)}) for k in range(n)]


def test_chunks_keep_whole_lines_and_numbering(tmp_path):
    p = tmp_path / "a.json.gz"
    p.write_bytes(gzip.compress(("\n".join(_lines(500)) + "\n").encode()))
    rep = FileReport(str(p))
    chunks = list(iter_line_chunks(p, rep, chunk_bytes=1000))
    assert len(chunks) > 5
    expected = 1
    for first, blob in chunks:
        assert first == expected and blob.endswith(b"\n")
        expected += blob.count(b"\n")
    assert expected == 501 and rep.rows_failed == 0


def test_fast_and_slow_paths_agree(tmp_path):
    lines = _lines(300)
    lines[150] = '{"u": "bad", '  # forces the line-by-line path for that chunk only
    p = tmp_path / "b.jsonl"
    p.write_text("\n".join(lines) + "\n")
    rep = FileReport(str(p))
    df = pl.concat(scan_json_columns(p, rep, SCHEMA, ["u", "i", "t"], chunk_bytes=2000))
    assert df.height == 299 and rep.rows_read == 300 and rep.failed == {"malformed": 1}
    assert rep.examples[0]["line"] == 151
    # _line is the 1-based line number in both paths
    assert df.filter(pl.col("t") == 200)["_line"].item() == 201
    assert df.filter(pl.col("t") == 151)["_line"].item() == 152


def test_truncated_gzip_keeps_complete_lines(tmp_path):
    data = gzip.compress(("\n".join(_lines(2000)) + "\n").encode())
    p = tmp_path / "c.json.gz"
    p.write_bytes(data[: len(data) // 2])
    rep = FileReport(str(p), allow_truncated=True)  # the default (an error) is in tests/hostile
    df = pl.concat(scan_json_columns(p, rep, SCHEMA, ["u", "i", "t"]))
    assert 0 < df.height < 2000
    assert rep.failed == {"truncated_gzip": 1}
    assert df["t"].to_list() == list(range(df.height))  # nothing half-parsed, no gap


def test_wrong_types_and_missing_fields_are_counted(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('{"u": "a", "i": "x", "t": 1}\n{"u": "a", "i": "y", "t": "soon"}\n'
                 '{"u": "", "i": "z", "t": 3}\n[1, 2]\n{"u": "b", "i": 7, "t": 4.0}\n')
    rep = FileReport(str(p))
    df = pl.concat(scan_json_columns(p, rep, SCHEMA, ["u", "i", "t"]))
    assert df.select("u", "i", "t").rows() == [("a", "x", 1), ("b", "7", 4)]
    assert rep.failed == {"bad_value:t": 1, "missing_field:u": 1, "not_an_object": 1}


def _stdlib_lines(path):
    """Complete lines the standard library's gzip decodes before the damage, and its error."""
    data, err = b"", None
    with gzip.open(path, "rb") as g:
        try:
            while piece := g.read1(1 << 16):
                data += piece
        except (EOFError, OSError) as e:
            err = e
    return data[: data.rfind(b"\n") + 1], err


def test_damaged_gzip_keeps_what_the_standard_library_keeps(tmp_path):
    # ISA-L inflates, but withholds its last buffer at the damage: the standard library
    # re-reads from there, so kept lines and the quoted error do not depend on the decoder.
    body = gzip.compress(("\n".join(_lines(60_000)) + "\n").encode(), compresslevel=1)
    cases = {"cut.json.gz": body[: len(body) * 2 // 3], "crc.json.gz": body[:-8] + b"\0" * 8}
    for name, blob in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        want, err = _stdlib_lines(p)
        rep = FileReport(str(p), allow_truncated=True)
        got = b"".join(b for _, b in iter_line_chunks(p, rep, chunk_bytes=1 << 20))
        assert got == want and err is not None
        (ex,) = rep.examples
        assert ex["detail"].startswith(str(err)[:60]), (name, ex)


def test_a_repeated_key_takes_its_last_value_in_any_chunk(tmp_path):
    """The same line parses the same way whether its chunk is otherwise clean (polars' path)
    or holds a malformed line (the line-by-line path): the last value, as json.loads gives,
    counted as a repair."""
    dup = '{"u": "first", "i": "x", "t": 1, "u": "last"}'
    clean, with_bad = _lines(40), _lines(40)
    with_bad[5] = '{"u": "bad", '
    clean[20], with_bad[20] = dup, dup
    p = tmp_path / "dup.jsonl"
    p.write_text("\n".join(clean + with_bad) + "\n")
    rep = FileReport(str(p))
    chunks = list(scan_json_columns(p, rep, SCHEMA, ["u", "i", "t"], chunk_bytes=len("\n".join(clean)) + 1))
    assert len(chunks) == 2  # one chunk per half
    df = pl.concat(chunks)
    assert df.filter(pl.col("i") == "x").select("u", "_line").rows() == [("last", 21), ("last", 61)]
    assert rep.repaired == {"duplicate_key:u": 2} and rep.failed == {"malformed": 1}
    # a value equal to a field's name is not a repeated key (it only takes the slow path)
    p.write_text(json.dumps({"u": "u", "i": "i", "t": 3}) + "\n")
    rep = FileReport(str(p))
    assert pl.concat(scan_json_columns(p, rep, SCHEMA, ["u", "i", "t"])).select("u", "i").rows() == [("u", "i")]
    assert rep.repaired == {} and rep.failed == {}
