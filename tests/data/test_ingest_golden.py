"""The ingest stage's outputs, byte for byte, against digests recorded from a reference version.

`tests/fixtures/data/ingest_golden.json` holds, per case, the SHA-256 of every output file
(items, interactions, splits, images manifest, report.json) and a digest of each Parquet
table's decoded rows, schema and metadata. They were recorded by the in-memory ingest at commit
38d938a, before the reading path became streaming (integer user codes per chunk, ISA-L gunzip):
this test is the proof that the streaming path writes the same files. The cases cover every
format the readers support (Amazon 2014 JSON and ratings CSV, 2018 JSON and CSV, 2023 JSONL
with millisecond timestamps, H&M), both split protocols, duplicates, timestamp ties, bad
lines, and (synthetic case `a2018_multichunk`) a review file of several 8 MiB chunks.

File bytes are compared when the installed pyarrow is the one that wrote the digests (Parquet
files name their writer's version); the decoded-row digests are compared always.

Re-record only when an output change is intended: `python tests/data/test_ingest_golden.py`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmrec.config import parse_params
from mmrec.data.stage import run
from mmrec.paths import ingest_dir

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
GOLDEN = FIX / "ingest_golden.json"
DAY = 86_400
T0 = 1_500_000_000


def _gz(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0,
                                               compresslevel=1) as g:
        g.write(data)


def _meta_2018(n_items: int) -> bytes:
    return b"".join(json.dumps({"asin": f"B{i:05d}", "title": f"Item {i}", "brand": f"Br{i % 7}",
                                "category": ["Cat", f"Sub{i % 5}"],
                                "description": [f"Thing {i}."]}).encode() + b"\n"
                    for i in range(n_items))


def synth_a2018_multichunk(raw: Path) -> None:
    """~40k review lines (several 8 MiB chunks): day-granular times (many ties), repeated
    interactions, unknown items, and bad lines early (timestamps) and late (JSON, ids, bytes)."""
    rng = np.random.default_rng(7)
    n, pad = 40_000, "x" * 200  # ~280 bytes a line, as real reviews
    users = rng.integers(0, 2500, n)
    items = np.minimum(rng.pareto(1.1, n) * 20, 330).astype(int)  # 300..330 have no meta
    days = rng.integers(0, 60, n)
    lines: list[bytes] = []
    for k in range(n):
        lines.append(json.dumps({"overall": 5.0, "reviewerID": f"U{users[k]:05d}",
                                 "asin": f"B{items[k]:05d}", "unixReviewTime": T0 + int(days[k]) * DAY,
                                 "reviewText": pad}).encode())
        if k % 97 == 0:
            lines.append(lines[-1])  # the same interaction twice
    # Timestamp problems stay in the first chunk: the report quotes one example per chunk.
    lines[50] = json.dumps({"reviewerID": "U00001", "asin": "B00001",
                            "unixReviewTime": (T0 + 5) * 1000}).encode()  # ms: repaired
    lines[60] = json.dumps({"reviewerID": "U00002", "asin": "B00002", "unixReviewTime": 12}).encode()
    lines[70] = json.dumps({"reviewerID": " U00003 ", "asin": "\ufeffB00003",
                            "unixReviewTime": T0}).encode()  # ids normalised
    lines[31_000] = b'{"reviewerID": "U00004", "asin": "B00004", "unixReviewTime": '  # malformed
    lines[32_000] = json.dumps({"asin": "B00004", "unixReviewTime": T0}).encode()
    lines[33_000] = b'{"reviewerID": "U00005", "asin": "B00005", "unixReviewTime": %d, "s": "\xe9"}' % T0
    lines[34_000] = json.dumps({"reviewerID": "U00006", "asin": "B00006",
                                "unixReviewTime": "soon"}).encode()
    lines.insert(35_000, b"")
    _gz(raw / "Synth.json.gz", b"\n".join(lines) + b"\n")
    _gz(raw / "meta_Synth.json.gz", _meta_2018(300))


def synth_a2018_csv(raw: Path) -> None:
    """Ratings-only 2018 CSV (item,user,rating,timestamp) with ties, repeats and bad rows."""
    rng = np.random.default_rng(8)
    rows = [f"B{rng.integers(0, 40):05d},U{rng.integers(0, 60):03d},5.0,{T0 + rng.integers(0, 9) * DAY}"
            for _ in range(1500)]
    rows += rows[:40]  # repeats at the end of the file
    rows[10] = "B00001,,5.0,1500000000"
    rows[20] = "B00002,U001,5.0,not-a-time"
    rows[30] = "B00003,U002,5.0,1500000000000"
    (raw / "Synth.csv").write_text("\n".join(rows) + "\n")
    _gz(raw / "meta_Synth.json.gz", _meta_2018(35))


def synth_a2014_csv(raw: Path) -> None:
    """Ratings-only 2014 CSV (user,item,rating,timestamp) with a dict-literal meta file."""
    rng = np.random.default_rng(9)
    rows = [f"A{rng.integers(0, 50):03d},X{rng.integers(0, 30):03d},4.0,{T0 + rng.integers(0, 6) * DAY}"
            for _ in range(900)]
    rows[5] = "A001,X001,4.0,"
    rows[6] = "A001,X001,4.0"
    (raw / "ratings_Synth.csv").write_text("\n".join(rows) + "\n")
    meta = [repr({"asin": f"X{i:03d}", "title": f"Book {i}", "categories": [["Books", f"S{i % 3}"]]})
            for i in range(28)]
    (raw / "meta_Synth.json").write_text("\n".join(meta) + "\n")


def synth_a2023(raw: Path) -> None:
    """2023 JSONL: millisecond times, ties to the millisecond, parent_asin, a missing parent."""
    rng = np.random.default_rng(10)
    lines = []
    for k in range(2500):
        t = (T0 + int(rng.integers(0, 20)) * DAY) * 1000 + int(rng.integers(0, 3)) * 250
        lines.append(json.dumps({"user_id": f"V{rng.integers(0, 150):03d}", "asin": f"c{k}",
                                 "parent_asin": f"P{rng.integers(0, 60):03d}", "rating": 4.0,
                                 "timestamp": t}))
    lines += lines[100:130]
    lines[7] = json.dumps({"user_id": "V001", "asin": "c", "timestamp": T0 * 1000})
    lines[8] = json.dumps({"user_id": "V001", "parent_asin": "P001", "timestamp": T0})  # seconds
    (raw / "Synth.jsonl").write_text("\n".join(lines) + "\n")
    meta = [json.dumps({"parent_asin": f"P{i:03d}", "title": f"Cream {i}", "store": "S",
                        "features": ["f"], "description": ["d"], "categories": ["Beauty"]})
            for i in range(58)]
    _gz(raw / "meta_Synth.jsonl.gz", ("\n".join(meta) + "\n").encode())


def synth_hm(raw: Path) -> None:
    """H&M: same-day purchases (ties), repeats, ids that lost their leading zero, bad rows."""
    rng = np.random.default_rng(11)
    header = "article_id,prod_name,product_type_name,product_group_name,graphical_appearance_name," \
             "colour_group_name,detail_desc"
    arts = [f"0{100000000 + i},Top {i},Vest,Upper,Solid,Black,Soft {i}." for i in range(45)]
    (raw / "articles.csv").write_text(header + "\n" + "\n".join(arts) + "\n")
    tx = ["t_dat,customer_id,article_id,price,sales_channel_id"]
    for _ in range(3000):
        a = f"0{100000000 + int(rng.integers(0, 48))}"
        if rng.random() < 0.05:
            a = a.lstrip("0")
        tx.append(f"2020-01-{rng.integers(1, 29):02d},c{rng.integers(0, 200):04d},{a},0.01,1")
    tx += tx[500:540]
    tx[40] = "2020-02-31,c0001,0100000001,0.01,1"
    tx[41] = "2020-01-03,,0100000001,0.01,1"
    (raw / "transactions_train.csv").write_text("\n".join(tx) + "\n")


SYNTH = {"synth_a2018_multichunk": synth_a2018_multichunk, "synth_a2018_csv": synth_a2018_csv,
         "synth_a2014_csv": synth_a2014_csv, "synth_a2023": synth_a2023, "synth_hm": synth_hm}
GLOBAL = {"split": "global_time", "min_user_interactions": 2}
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {  # name: (source, raw folder, data params)
    "a2018_fixture": ("amazon2018", "amazon2018", {"min_user_interactions": 3}),
    "a2014_fixture_truncated": ("amazon2014", "amazon2014",
                                {"allow_truncated": True, "min_user_interactions": 1, **GLOBAL}),
    "a2023_fixture": ("amazon2023", "amazon2023", {"require": [], "min_user_interactions": 3}),
    "hm_fixture": ("hm", "hm", {"require": ["text"]}),
    "hm_fixture_global": ("hm", "hm", {"require": [], **GLOBAL,
                                       "time_split": {"valid_start": "2020-01-05"}}),
    "a2018_multichunk": ("amazon2018", "synth_a2018_multichunk", {"require": ["text"]}),
    "a2018_multichunk_global": ("amazon2018", "synth_a2018_multichunk",
                                {"require": ["text"], "item_core": 3, "max_history": 8, **GLOBAL}),
    "a2018_csv": ("amazon2018", "synth_a2018_csv", {"require": ["text"], "item_core": 2}),
    "a2014_csv_global": ("amazon2014", "synth_a2014_csv", {"require": ["text"], **GLOBAL}),
    "a2023_synth": ("amazon2023", "synth_a2023", {"require": ["text"], "min_user_interactions": 4}),
    "hm_synth": ("hm", "synth_hm", {"require": ["text"], "max_history": 5}),
    "hm_synth_global": ("hm", "synth_hm", {"require": ["text"], **GLOBAL,
                                           "time_split": {"valid_start": "2020-01-20",
                                                          "test_start": "2020-01-25"}}),
}


def _prepare(raw_name: str, dest: Path) -> None:
    if raw_name in SYNTH:
        dest.mkdir(parents=True)
        SYNTH[raw_name](dest)
    else:
        shutil.copytree(FIX / raw_name, dest)


def _rows_digest(path: Path) -> str:
    """Decoded content of a Parquet file: schema (with metadata) and every row, as JSON."""
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()
            if k != b"ARROW:schema"}
    body = json.dumps({"schema": str(table.schema.remove_metadata()), "meta": meta,
                       "rows": table.to_pylist()}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def run_case(name: str, work: Path) -> dict[str, Any]:
    """Ingest one case under `work` (the working directory: paths in the outputs are relative)."""
    source, raw_name, data = CASES[name]
    _prepare(raw_name, work / "raw" / name)
    params = parse_params({"data": {"name": name, "source": source, "raw_dir": f"raw/{name}",
                                    "images": {"enabled": False}, **data}})
    run(params, root=Path("."))
    out = ingest_dir(params, Path("."))
    digests: dict[str, Any] = {}
    for f in sorted(out.iterdir()):
        entry = {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()}
        if f.suffix == ".parquet":
            entry["rows"] = _rows_digest(f)
        digests[f.name] = entry
    return digests


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_the_recorded_reference(name, tmp_path, monkeypatch):
    golden = json.loads(GOLDEN.read_text())
    monkeypatch.chdir(tmp_path)
    got = run_case(name, tmp_path)
    want = golden["cases"][name]
    assert sorted(got) == sorted(want)
    same_writer = golden["pyarrow"] == pa.__version__
    for f, entry in want.items():
        if "rows" in entry:
            assert got[f]["rows"] == entry["rows"], f"{name}/{f}: table content differs"
        if same_writer or "rows" not in entry:
            assert got[f]["sha256"] == entry["sha256"], f"{name}/{f}: bytes differ"


def _record() -> None:
    import os
    import tempfile

    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        for name in sorted(CASES):
            cases[name] = run_case(name, Path(tmp))
    GOLDEN.write_text(json.dumps({"pyarrow": pa.__version__, "cases": cases}, indent=1,
                                 sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({len(cases)} cases)", file=sys.stderr)


if __name__ == "__main__":
    _record()
