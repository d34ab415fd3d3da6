import shutil
from pathlib import Path

import polars as pl
import pytest

from mmrec.data.amazon import (FORMATS, iter_amazon_interactions, locate_files, read_amazon_meta,
                               resolve_category)
from mmrec.data.report import IngestReport

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
FIELDS = ["title", "brand", "category", "description"]


def _read(source, raw):
    fmt = FORMATS[source]
    rep = IngestReport(allow_truncated=True)  # amazon2014's reviews are cut on purpose
    files = locate_files(fmt, raw, resolve_category(raw, None))
    items = read_amazon_meta(fmt, files.meta, raw, "RAW", FIELDS, 200, rep)
    inter = pl.concat(iter_amazon_interactions(fmt, files, rep))
    return items, inter, rep


def test_amazon2018_counts_every_bad_row():
    items, inter, rep = _read("amazon2018", FIX / "amazon2018")
    meta, reviews = (rep.files[str(FIX / "amazon2018" / n)] for n in ("meta_Toys.json.gz", "Toys.json"))
    assert meta.failed == {"duplicate_id": 1, "missing_field:asin": 1}
    assert reviews.failed == {"malformed": 1, "missing_field:reviewerID": 1}
    assert reviews.repaired == {"non_utf8_replaced": 1}  # the row is kept
    assert reviews.rows_read == reviews.rows_parsed + reviews.rows_failed
    lines = {e["reason"]: e["line"] for e in reviews.examples}
    assert lines["malformed"] == 25 and lines["missing_field:reviewerID"] == 26
    assert items["item_id"].to_list() == [f"I{i}" for i in range(1, 9)]
    i1 = items.row(0, named=True)
    assert i1["title"] == "Toy & Game 1"  # entities and tags cleaned
    assert i1["text"] == "Toy & Game 1 | Acme | Toys & Games, Puzzles | Fun toy 1. Ages 3+"
    assert i1["image_path"] == "RAW/images/I1.jpg"
    by_id = {r["item_id"]: r for r in items.iter_rows(named=True)}
    assert by_id["I7"]["image_path"] is None and by_id["I8"]["has_text"] is False
    assert inter.filter(pl.col("item_id") == "I6")["user_id"].to_list() == ["u2", "u3"]


def test_amazon2014_literal_meta_and_truncated_reviews():
    items, inter, rep = _read("amazon2014", FIX / "amazon2014")
    meta = rep.files[str(FIX / "amazon2014" / "meta_Books.json")]
    assert meta.failed == {"malformed": 2}  # broken literal + a call expression (never run)
    titles = dict(zip(items["item_id"], items["title"]))
    assert titles["X1"] == 'Bob\'s "Great" Book' and titles["X2"] == 'It\'s "quoted" twice'
    assert items.filter(pl.col("item_id") == "X1")["category"].item() == "Books, Children's"
    reviews = rep.files[str(FIX / "amazon2014" / "reviews_Books_5.json.gz")]
    assert reviews.failed == {"truncated_gzip": 1}
    assert 0 < inter.height < 12


def test_amazon2023_parent_asin_and_milliseconds():
    items, inter, rep = _read("amazon2023", FIX / "amazon2023")
    assert set(inter["item_id"]) == {"P1", "P2", "P3"}
    assert inter["_tfine"][0] % 1000 == 123  # milliseconds kept for ordering; seconds in the output
    assert items.filter(pl.col("item_id") == "P1")["text"].item().startswith("Cream 1 – 50ml | Glow")
    # MAIN image is preferred (the local copy wins here, so the URL stays for reference only)
    assert items.filter(pl.col("item_id") == "P1")["image_url"].item().endswith("/P1.jpg")


@pytest.mark.parametrize("source,name,row", [
    ("amazon2014", "ratings_Books.csv", "{u},{i},5.0,{t}"),
    ("amazon2018", "Books.csv", "{i},{u},5.0,{t}"),
])
def test_ratings_csv_column_orders(tmp_path, source, name, row):
    shutil.copy(FIX / "amazon2014" / "meta_Books.json", tmp_path / "meta_Books.json")
    if source == "amazon2018":  # 2018 meta is JSON, not a dict literal
        (tmp_path / "meta_Books.json").write_text('{"asin": "X1", "title": "t"}\n')
    lines = [row.format(u="U1", i="X1", t=1_400_000_000), row.format(u="U2", i="X1", t="oops"), "U3"]
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    _, inter, rep = _read(source, tmp_path)
    assert inter.select("user_id", "item_id", "_tfine").rows() == [("U1", "X1", 1_400_000_000)]
    assert rep.files[str(tmp_path / name)].rows_failed == 2


def test_missing_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta_"):
        resolve_category(tmp_path, None)
    (tmp_path / "meta_A.json").write_text("{}\n")
    (tmp_path / "meta_B.json").write_text("{}\n")
    with pytest.raises(ValueError, match="data.category"):
        resolve_category(tmp_path, None)
    with pytest.raises(FileNotFoundError, match="tried A_5.json"):
        locate_files(FORMATS["amazon2018"], tmp_path, "A")


def _hostile_meta(path: Path, n: int = 400) -> None:
    """Meta lines that exercise every report call, both the per-line ones (bad JSON, bad bytes,
    missing id: made while parsing) and the cross-line ones (duplicates, image references: made
    while collecting), interleaved from the first lines on; gzip cut short at the end."""
    import gzip
    import json

    lines = []
    for i in range(n):
        rec = {"asin": f"A{i % 350}", "title": f"<b>Item</b> {i} &amp;amp; more",
               "description": [f"<p>Line {i}</p><script>x()</script>", "plain"],
               "category": ["Toys", f"Cat {i % 7}"]}
        if i % 9 == 4:
            rec["imageURL"] = [f"images/missing_{i}.jpg"]  # local reference to nothing: repaired
        line = json.dumps(rec).encode()
        if i % 11 == 3:
            line = b'{"asin": "broken'
        elif i % 13 == 5:
            line = json.dumps({"title": "no id"}).encode()
        elif i % 17 == 6:
            line = line.replace(b"more", b"m\xffore")  # invalid UTF-8: the row is kept
        lines.append(line)
    blob = gzip.compress(b"\n".join(lines) + b"\n")
    path.write_bytes(blob[: len(blob) - 40])  # truncated: the last lines are lost


def test_meta_in_worker_processes_gives_the_serial_table_and_report(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    meta = raw / "meta_X.json.gz"
    _hostile_meta(meta)
    fmt = FORMATS["amazon2018"]

    def read(workers, chunk_bytes):
        rep = IngestReport(allow_truncated=True)
        items = read_amazon_meta(fmt, meta, raw, "RAW", FIELDS, 120, rep, workers=workers,
                                 chunk_bytes=chunk_bytes)
        return items, rep.to_dict()

    for chunk_bytes in (2000, 777):  # many chunks; the reference: one process, in file order
        serial_items, serial_rep = read(1, chunk_bytes)
        f = serial_rep["files"][0]
        assert {"duplicate_id", "malformed", "missing_field:asin", "truncated_gzip"} <= set(f["failed"])
        assert {"non_utf8_replaced", "image_source_missing"} <= set(f["repaired"])
        # the examples mix calls made while parsing and while collecting, in line order
        assert [e["line"] for e in f["examples"]] == sorted(e["line"] for e in f["examples"])
        assert {"malformed", "image_source_missing"} <= {e["reason"] for e in f["examples"]}
        for workers in (2, 3):
            items, rep = read(workers, chunk_bytes)
            assert rep == serial_rep, (workers, chunk_bytes)
            assert items.equals(serial_items), (workers, chunk_bytes)
        assert serial_items.height == f["rows_parsed"] > 250


def test_meta_workers_do_not_rerun_a_script_without_a_main_guard(tmp_path):
    import subprocess
    import sys

    raw = tmp_path / "raw"
    raw.mkdir()
    _hostile_meta(raw / "meta_X.json.gz")
    script = tmp_path / "user_script.py"  # what a user might write: no `if __name__ == "__main__"`
    script.write_text(
        "from pathlib import Path\n"
        "from mmrec.data.amazon import FORMATS, read_amazon_meta\n"
        "from mmrec.data.report import IngestReport\n"
        "print('script ran', flush=True)\n"
        f"raw = Path({str(raw)!r})\n"
        "items = read_amazon_meta(FORMATS['amazon2018'], raw / 'meta_X.json.gz', raw, 'RAW', ['title'], 100,\n"
        "                         IngestReport(allow_truncated=True), workers=2, chunk_bytes=2000)\n"
        "print('items', items.height)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("script ran") == 1 and "items 299" in out.stdout
