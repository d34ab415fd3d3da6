import gzip
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from mmrec.config import parse_params
from mmrec.data.sample import generate
from mmrec.data.stage import run
from mmrec.paths import ingest_dir

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "raw" / "sample"


def _text_digest(path: Path) -> str:
    data = path.read_bytes()
    # compare content, not gzip framing (zlib builds may differ in compressed bytes)
    return hashlib.sha256(gzip.decompress(data) if path.suffix == ".gz" else data).hexdigest()


@pytest.mark.slow
def test_sample_regenerates_identically(tmp_path):
    generate(tmp_path)
    ours = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*") if p.is_file())
    assert ours == committed
    total = sum((SAMPLE / f).stat().st_size for f in committed)
    assert total < 10_000_000
    for f in committed:
        if f.endswith(".jpg"):
            # JPEG bytes depend on the libjpeg build; the drawing must match to within codec noise
            a = np.asarray(Image.open(SAMPLE / f), dtype=np.int16)
            b = np.asarray(Image.open(tmp_path / f), dtype=np.int16)
            assert a.shape == b.shape and np.abs(a - b).mean() < 2.0, f
        else:
            assert _text_digest(SAMPLE / f) == _text_digest(tmp_path / f), f


@pytest.mark.slow
def test_sample_has_the_structure_models_need(tmp_path):
    p = parse_params({"data": {"raw_dir": str(SAMPLE)}})
    res = run(p, root=tmp_path)
    st = res["stats"]
    assert 2000 <= st["users"] <= 3000 and 1500 <= st["items"] <= 2000
    assert 20_000 <= st["interactions"] <= 35_000
    items = pl.read_parquet(ingest_dir(p, tmp_path) / "items.parquet")
    splits = pl.read_parquet(ingest_dir(p, tmp_path) / "splits.parquet")
    # long tail: a minority of items holds most training interactions; many are rare
    pop = items["n_train"].sort(descending=True)
    assert pop.head(len(pop) // 5).sum() > 0.5 * pop.sum()
    assert (items["n_train"] <= 3).mean() > 0.1
    test = splits.filter(pl.col("split") == "test")
    assert 0.02 < test["cold_target"].mean() < 0.3  # some cold targets, not most
    # content explains the next item: it shares colour or material with the history far above chance
    words = dict(zip(items["item_idx"], items["title"]))

    def attrs(i):
        t = words[i].split()
        return set(t[-3:-1])  # colour and material words sit before the noun

    share = np.mean([bool(attrs(r["target"]) & set().union(*(attrs(h) for h in r["history"])))
                     for r in test.head(500).iter_rows(named=True)])
    assert share > 0.8
