"""The reader registry and the generic `table` reader (interactions + items tables, no code)."""

import shutil
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from mmrec.config import ParamsError, parse_params
from mmrec.data.report import IngestReport
from mmrec.data.sources import SOURCES, ReadRequest, Source, SourceData, get_source, source_names
from mmrec.data.stage import run
from mmrec.paths import ingest_dir

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "table"
TABLE = {"user": "uid", "item": "movie", "time": "when", "rating": "stars", "min_rating": 2,
         "text": ["name", "genres"], "image": "poster"}


def _params(raw_dir, **data):
    return parse_params({"data": {"name": "films", "source": "table", "raw_dir": str(raw_dir),
                                  "min_user_interactions": 3, "require": ["text"], "table": TABLE, **data}})


@pytest.fixture
def raw(tmp_path):
    """The fixture tables under data/raw/films, with the posters they name (m4's is missing) and
    one image outside the raw folder (m5 points at it)."""
    raw = tmp_path / "data" / "raw" / "films"
    shutil.copytree(FIX, raw)
    (raw / "p").mkdir()
    for m in ("m1", "m2", "m3", "m6", "m7"):
        Image.new("RGB", (8, 8), (40, 80, 120)).save(raw / "p" / f"{m}.png")
    Image.new("RGB", (8, 8)).save(raw.parent / "outside.png")
    return tmp_path


def test_built_in_readers_are_registered():
    assert {"amazon2014", "amazon2018", "amazon2023", "hm", "table"} <= set(source_names())
    assert get_source("amazon2018").downloads_images and not get_source("hm").downloads_images
    with pytest.raises(KeyError, match="known: amazon2014, amazon2018, amazon2023, hm"):
        get_source("movielens")


def test_table_source_end_to_end(raw):
    p = _params("data/raw/films")
    res = run(p, root=raw)
    out = ingest_dir(p, raw)
    items = pl.read_parquet(out / "items.parquet")
    inter = pl.read_parquet(out / "interactions.parquet")
    files = {Path(f["path"]).name: f for f in res["files"]}
    assert files["interactions.csv"]["failed"] == {"missing_field:uid": 1, "bad_value:when": 1,
                                                   "rating_below_min_rating": 1}
    assert files["items.csv"]["failed"] == {"duplicate_id": 1, "missing_field:movie": 1}
    assert files["items.csv"]["repaired"] == {"image_source_missing": 1, "image_source_refused:outside_raw_dir": 1}
    row = {r["item_id"]: r for r in items.iter_rows(named=True)}
    assert row["m1"]["text"] == "Heat, the film | Crime|Drama"      # the first of a duplicated id wins
    assert row["m3"]["text"] == "Brazil | Comedy"                    # markup cleaned
    assert row["m7"]["text"] == "Drama"
    assert row["m1"]["image_path"] == "data/raw/films/p/m1.png" and row["m1"]["has_image"]
    assert row["m4"]["image_path"] is None and row["m5"]["image_path"] is None and row["m8"]["image_path"] is None
    assert row["m1"]["genres"] == "Crime|Drama"                      # text columns kept as metadata
    # u1's times are ISO date-times (UTC, trailing Z); everyone else's are seconds
    u1 = inter.filter(pl.col("user_id") == "u1").sort("timestamp")["timestamp"].to_list()
    assert u1 == [1_599_998_400 + 3600 * j for j in range(5)]
    assert inter["user_id"].n_unique() == 6 and res["source"] == "table"


def test_table_source_reads_parquet_tsv_and_millisecond_times(raw):
    films = raw / "data" / "raw" / "films"
    inter = pl.read_csv(films / "interactions.csv", infer_schema=False).filter(
        pl.col("when").str.contains(r"^\d+$")).with_columns(when=pl.col("when").cast(pl.Int64) * 1000)
    inter.write_parquet(films / "events.parquet")
    pl.read_csv(films / "items.csv", infer_schema=False).write_csv(films / "catalogue.tsv", separator="\t")
    p = _params(films, table={**TABLE, "interactions": "events.parquet", "items": "catalogue.tsv",
                              "time_unit": "ms", "image": None})
    got = get_source("table").read(ReadRequest(p.data, p.data.source_options(), films, "RAW", IngestReport()))
    df = pl.concat(list(got.interactions))
    assert got.time_per_second == 1000 and df["_tfine"].min() == 1_600_000_000_000
    assert got.items["image_path"].null_count() == got.items.height
    assert sorted(got.items["item_id"]) == [f"m{i}" for i in range(1, 9)]
    assert got.items.filter(pl.col("item_id") == "m1")["text"].item() == "Heat, the film | Crime|Drama"


def test_table_settings_are_validated_when_params_load(raw):
    with pytest.raises(ParamsError, match=r"data.table.colour: unknown key"):
        _params("x", table={**TABLE, "colour": "red"})
    with pytest.raises(ParamsError, match="min_rating needs `rating`"):
        _params("x", table={"min_rating": 3})
    with pytest.raises(ParamsError, match="inside data.raw_dir"):
        _params("x", table={"image_dir": "../elsewhere"})
    with pytest.raises(ParamsError, match=r"unknown data source 'tabel'; known: .*hm, table"):
        _params("x", source="tabel")
    with pytest.raises(ParamsError, match=r"data.hm: unknown key"):
        _params("x", hm={"a": 1})
    with pytest.raises(FileNotFoundError, match="nope.csv: not found"):
        run(_params("data/raw/films", table={**TABLE, "interactions": "nope.csv"}), root=raw)
    bad = raw / "data/raw/films/items.csv"
    bad.write_text("movie,title\nm1,x\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['name', 'genres', 'poster'\]"):
        run(_params("data/raw/films"), root=raw)


def test_a_new_reader_needs_only_its_registration(monkeypatch):
    """What a new module in mmrec/data/sources/ does at import is all `data.source` needs."""
    def read(req: ReadRequest) -> SourceData:
        raise NotImplementedError

    source = Source("stream_test", read)
    monkeypatch.setitem(SOURCES._factories, source.name, lambda: source)
    assert parse_params({"data": {"source": "stream_test"}}).data.source == "stream_test"
