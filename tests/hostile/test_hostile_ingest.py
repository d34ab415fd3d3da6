"""Damaged raw files: each case ends in a clear error naming the file and line, or a counted
repair/skip in the ingest report, never in silent loss."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from mmrec.config import parse_params
from mmrec.data.stage import run, summary_line
from mmrec.data.text import clean_text
from mmrec.paths import ingest_dir

T0 = 1_500_000_000  # 2017, in seconds
N_ITEMS, N_USERS, PER_USER = 6, 5, 4


def _meta_lines() -> list[str]:
    return [json.dumps({"asin": f"I{i}", "title": f"toy {i}"}) for i in range(1, N_ITEMS + 1)]


def _review(u: int, k: int, **over) -> dict:
    rec = {"reviewerID": f"U{u}", "asin": f"I{(u + k) % N_ITEMS + 1}",
           "unixReviewTime": T0 + 86_400 * (u * PER_USER + k)}
    rec.update(over)
    return rec


def _reviews() -> list[dict]:
    return [_review(u, k) for u in range(N_USERS) for k in range(PER_USER)]


def _write(raw: Path, reviews: list[dict] | list[bytes], meta: list[str] | None = None,
           gz_meta: bool = False) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    body = "\n".join(meta if meta is not None else _meta_lines()) + "\n"
    if gz_meta:
        (raw / "meta_Toys.json.gz").write_bytes(gzip.compress(body.encode(), mtime=0))
    else:
        (raw / "meta_Toys.json").write_text(body)
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in reviews]
    (raw / "Toys.json").write_bytes(b"\n".join(lines) + b"\n")
    return raw


def _params(raw: Path, source: str = "amazon2018", **data):
    return parse_params({"data": {"name": "h", "source": source, "raw_dir": str(raw),
                                  "min_user_interactions": 3, "require": ["text"], **data}})


def _file(res: dict, name: str) -> dict:
    return next(f for f in res["files"] if f["path"].endswith(name))


def test_truncated_gzip_is_an_error_naming_the_line(tmp_path: Path) -> None:
    filler = [json.dumps({"asin": f"F{k}", "title": hashlib.sha256(str(k).encode()).hexdigest()})
              for k in range(2000)]  # incompressible, so half the bytes is about half the lines
    raw = _write(tmp_path / "raw", _reviews(), meta=_meta_lines() + filler, gz_meta=True)
    whole = (raw / "meta_Toys.json.gz").read_bytes()
    (raw / "meta_Toys.json.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"meta_Toys\.json\.gz: truncated gzip at line \d+ .*"
                                         r"data\.allow_truncated"):
        run(_params(raw), root=tmp_path)
    assert not ingest_dir(_params(raw), tmp_path).exists()  # nothing written
    # Opting in reads the complete lines, counts the damage and shouts in the summary line.
    res = run(_params(raw, allow_truncated=True), root=tmp_path)
    meta = _file(res, "meta_Toys.json.gz")
    assert meta["failed"] == {"truncated_gzip": 1}
    assert 6 < meta["rows_parsed"] < 2006 and meta["examples"][0]["line"] == meta["rows_parsed"] + 1
    assert res["truncated_files"] == [str(raw / "meta_Toys.json.gz")]
    assert summary_line(res).startswith("WARNING: 1 TRUNCATED FILE(S) READ ONLY IN PART")


def test_ids_are_normalised_the_same_in_every_file(tmp_path: Path) -> None:
    clean = run(_params(_write(tmp_path / "a", _reviews())), root=tmp_path)
    spaced = [{**r, "reviewerID": f" {r['reviewerID']}\t", "asin": f"{r['asin']} "} for r in _reviews()]
    meta = [json.dumps({"asin": f"  I{i} ", "title": f"toy {i}"}) for i in range(1, N_ITEMS + 1)]
    p = _params(_write(tmp_path / "b", spaced, meta), name="h2")
    res = run(p, root=tmp_path)
    assert res["stats"] == clean["stats"]  # no row lost, no user split in two
    users = pl.read_parquet(ingest_dir(p, tmp_path) / "interactions.parquet")["user_id"].unique()
    assert sorted(users) == [f"U{u}" for u in range(N_USERS)]


def test_timestamps_in_the_wrong_unit_are_repaired_and_counted(tmp_path: Path) -> None:
    revs = _reviews()
    revs[0]["unixReviewTime"] *= 1000  # milliseconds in 2018 data (line 1)
    revs[5]["unixReviewTime"] = 12  # 1970: plausible in no unit (line 6)
    res = run(_params(_write(tmp_path / "raw", revs)), root=tmp_path)
    f = _file(res, "/Toys.json")
    assert f["repaired"] == {"timestamp_unit_repaired": 1}
    assert f["failed"] == {"bad_value:timestamp_range": 1}
    assert [(e["line"], e["reason"]) for e in f["examples"]] == [
        (1, "timestamp_unit_repaired"), (6, "bad_value:timestamp_range")]
    inter = pl.read_parquet(Path(res["output_dir"]) / "interactions.parquet")
    assert inter["timestamp"].max() < 2_000_000_000
    # A file whose timestamps are mostly implausible is a wrong source, not a few bad rows.
    bad = [_review(u, k, unixReviewTime=k + 1) for u in range(N_USERS) for k in range(PER_USER)]
    with pytest.raises(ValueError, match=r"Toys\.json: 20 of 20 timestamps are implausible"):
        run(_params(_write(tmp_path / "raw2", bad), name="h2"), root=tmp_path)


def test_overflowing_numbers_are_counted_per_line(tmp_path: Path) -> None:
    revs: list = [json.dumps(r).encode() for r in _reviews()]
    revs[2] = b'{"reviewerID": "U0", "asin": "I1", "unixReviewTime": Infinity}'
    revs[3] = b'{"reviewerID": "U0", "asin": "I1", "unixReviewTime": 1e400}'
    revs[4] = b'{"reviewerID": "U1", "asin": "I1", "unixReviewTime": 99999999999999999999999}'
    revs.append(b'{"reviewerID": "U1", "asin": "I2", "unixReviewTime": -9223372036854775809}')
    res = run(_params(_write(tmp_path / "raw", revs)), root=tmp_path)
    f = _file(res, "/Toys.json")
    assert f["failed"] == {"bad_value:unixReviewTime": 4}
    assert [e["line"] for e in f["examples"]] == [3, 4, 5, 21]
    assert f["rows_read"] == 21 and f["rows_parsed"] == 17


def test_non_utf8_bytes_in_csvs_are_counted_repairs(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "meta_Toys.json").write_text("\n".join(_meta_lines()) + "\n")
    rows = [f"I{(u + k) % N_ITEMS + 1},U{u},5.0,{T0 + 86_400 * (u * 9 + k)}"
            for u in range(N_USERS) for k in range(PER_USER)]
    data = ("\n".join(rows) + "\n").encode().replace(b"U2,", b"U2\xff,", 1)  # line 9
    (raw / "Toys.csv").write_bytes(data)
    res = run(_params(raw), root=tmp_path)
    f = _file(res, "Toys.csv")
    assert f["repaired"] == {"non_utf8_replaced": 1} and f["examples"][0]["line"] == 9
    assert f["rows_parsed"] == N_USERS * PER_USER  # kept

    hm = tmp_path / "hm"
    hm.mkdir()
    (hm / "articles.csv").write_text("article_id,prod_name,product_type_name\n0100000001,Tee,Top\n"
                                     "0100000002,Sock,Sock\n")
    tx = ["t_dat,customer_id,article_id"] + [f"2019-0{m}-01,c{u},010000000{m % 2 + 1}"
                                             for u in range(3) for m in range(1, 5)]
    (hm / "transactions_train.csv").write_bytes(("\n".join(tx) + "\n").encode()
                                                .replace(b"c1,", b"c\xfe1,", 1))
    p = parse_params({"data": {"name": "hm", "source": "hm", "raw_dir": str(hm), "require": [],
                               "min_user_interactions": 3,
                               "text": {"hm_fields": ["prod_name", "product_type_name"]}}})
    f = _file(run(p, root=tmp_path), "transactions_train.csv")
    assert f["repaired"] == {"non_utf8_replaced": 1} and f["examples"][0]["line"] == 6


def test_empty_files_are_clear_errors(tmp_path: Path) -> None:
    raw = _write(tmp_path / "raw", _reviews())
    (raw / "Toys.json").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Toys\.json: empty file \(0 bytes\)"):
        run(_params(raw), root=tmp_path)
    hm = tmp_path / "hm"
    hm.mkdir()
    (hm / "articles.csv").write_text("article_id,prod_name\n0100000001,Tee\n")
    p = parse_params({"data": {"name": "hm", "source": "hm", "raw_dir": str(hm), "require": [],
                               "text": {"hm_fields": ["prod_name"]}}})
    (hm / "transactions_train.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"transactions_train\.csv: empty file"):
        run(p, root=tmp_path)
    (hm / "transactions_train.csv").write_text("t_dat,customer_id,article_id\n")
    with pytest.raises(ValueError, match=r"transactions_train\.csv: no data rows"):
        run(p, root=tmp_path)


def test_byte_order_mark_costs_no_line(tmp_path: Path) -> None:
    raw = _write(tmp_path / "raw", _reviews())
    for name in ("meta_Toys.json", "Toys.json"):
        (raw / name).write_bytes(b"\xef\xbb\xbf" + (raw / name).read_bytes())
    res = run(_params(raw), root=tmp_path)
    assert all(f["rows_failed"] == 0 for f in res["files"])
    assert res["rows_parsed"] == N_ITEMS + N_USERS * PER_USER


def test_html_is_converted_by_a_real_parser() -> None:
    assert clean_text("Fits <b>5</b> cm < width > 3 cm") == "Fits 5 cm < width > 3 cm"
    assert clean_text("<p>Soft<script>steal()</script><style>p{x:1}</style> &amp; warm</p>") \
        == "Soft & warm"
    assert clean_text("Toy &amp;amp; Game &lt;b&gt;") == "Toy & Game <b>"  # decoded, not re-parsed
    assert clean_text("red\x1b[31m title\x07") == "red title"
