from pathlib import Path

import polars as pl
import pytest

from mmrec.data.hm import iter_hm_transactions, locate_hm, read_hm_articles
from mmrec.data.report import IngestReport

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "hm"
FIELDS = ["prod_name", "product_type_name", "product_group_name", "graphical_appearance_name",
          "colour_group_name"]


def test_articles_ids_quotes_duplicates_and_images():
    rep = IngestReport()
    items = read_hm_articles(FIX / "articles.csv", FIX, "RAW", FIELDS, 300, rep)
    art = rep.files[str(FIX / "articles.csv")]
    assert art.failed == {"duplicate_id": 1, "missing_field:article_id": 1, "wrong_field_count": 1}
    assert art.repaired == {"article_id_zero_padded": 1}
    ids = items["item_id"].to_list()
    assert ids == ["0108775015", "0108775044", "0110065001", "0111586001", "0120129014"]
    row = items.filter(pl.col("item_id") == "0108775044").row(0, named=True)
    assert row["prod_name"] == "Strap top, 2-pack"  # quoted comma kept inside the field
    assert row["text"] == "Strap top, 2-pack | Vest top | Garment Upper body | Solid | White"
    assert row["detail_desc"] == "Two tops, one price."
    assert row["image_path"] == "RAW/images/010/0108775044.jpg"
    assert items.filter(pl.col("item_id") == "0120129014")["image_path"].item() is None
    first = items.filter(pl.col("item_id") == "0108775015")["prod_name"].item()
    assert first == "Strap top"  # the first of a duplicated id wins


def test_transactions_stream_with_counted_failures():
    rep = IngestReport()
    df = pl.concat(iter_hm_transactions(FIX / "transactions_train.csv", rep))
    tx = rep.files[str(FIX / "transactions_train.csv")]
    assert tx.failed == {"bad_value:t_dat": 1, "missing_field:article_id": 1}
    assert tx.repaired == {"article_id_zero_padded": 1}
    assert df.height == 13 and df["item_id"].str.len_chars().unique().to_list() == [10]
    c1 = df.filter(pl.col("user_id") == "c1")
    # same-day purchases share the midnight timestamp; file order is the tie-break
    assert c1["_tfine"].to_list()[:3] == [1577836800] * 3
    assert c1["_order"].is_sorted()


def test_hm_wrong_columns_is_a_clear_error(tmp_path):
    (tmp_path / "articles.csv").write_text("id,name\n1,x\n")
    (tmp_path / "transactions_train.csv").write_text("t_dat,customer_id,article_id\n")
    files = locate_hm(tmp_path)
    with pytest.raises(ValueError, match="no article_id column"):
        read_hm_articles(files.articles, tmp_path, "RAW", FIELDS, 100, IngestReport())
    with pytest.raises(FileNotFoundError, match="articles.csv"):
        locate_hm(tmp_path / "nope")
