"""Images decoded the way a person sees them, and a ceiling on silent decode failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from PIL import Image

from mmrec.config import parse_params
from mmrec.data.images import decode_rgb
from mmrec.features import stage
from mmrec.features.encoders import EncodedBatch, ImageEncoder
from mmrec.features.extract import TooManyFailuresError, chunk_dir_for
from mmrec.paths import feature_path, modality_features_dir


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((10, 20, 3), np.uint8)  # 20 wide, 10 high: red left half, blue right half
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": phones write this
    Image.fromarray(arr).save(tmp_path / "r.jpg", quality=95, exif=exif)
    img = np.asarray(decode_rgb(tmp_path / "r.jpg"))
    assert img.shape == (20, 10, 3)  # portrait, as shown by any viewer
    assert img[2, 5, 0] > 200 and img[2, 5, 2] < 60  # the red half is on top
    assert img[17, 5, 2] > 200 and img[17, 5, 0] < 60


def test_alpha_palette_and_16_bit_are_converted(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black: a cut-out product photo
    rgba[0, 0] = (0, 128, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = np.asarray(decode_rgb(tmp_path / "a.png"))
    assert out[3, 3].tolist() == [255, 255, 255] and out[0, 0].tolist() == [0, 128, 0]

    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.save(tmp_path / "p.png", transparency=0)  # index 0 (black) is transparent
    out = np.asarray(decode_rgb(tmp_path / "p.png"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [200, 10, 10]

    grey16 = Image.fromarray(np.full((4, 4), 32768, np.uint16))  # mid grey in 16 bits
    grey16.save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode.startswith("I")
    assert np.asarray(decode_rgb(tmp_path / "g.png"))[0, 0].tolist() == [128, 128, 128]


class _TinyImage(ImageEncoder):
    """The real decode path (ImageEncoder.load_item) with a 3-number "model": mean colour."""

    name, dim, n_tokens, token_dim, input_size = "tiny-image", 3, 0, 0, (4, 4)

    def __init__(self) -> None:
        self.transform = lambda img: torch.from_numpy(
            np.asarray(img.resize((4, 4)), np.float32).transpose(2, 0, 1).copy())

    def encode(self, batch: torch.Tensor) -> EncodedBatch:
        return EncodedBatch(batch.mean(dim=(2, 3)))

    def metadata(self) -> dict:
        return {"pretrained": "none (test)"}


def _project(root: Path, n: int, n_corrupt: int) -> None:
    img_dir = root / "data" / "raw" / "x" / "images"
    img_dir.mkdir(parents=True)
    paths = []
    for i in range(1, n + 1):
        p = img_dir / f"{i}.png"
        if i <= n_corrupt:
            p.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            Image.new("RGB", (6, 6), (i * 20, 0, 0)).save(p)
        paths.append(f"data/raw/x/images/{i}.png")
    out = root / "data" / "x" / "ingest" / "items.parquet"
    out.parent.mkdir(parents=True)
    pl.DataFrame({"item_idx": pl.Series(range(1, n + 1), dtype=pl.Int32),
                  "image_path": paths}).write_parquet(out)


def test_too_many_failed_decodes_fail_the_stage(tmp_path: Path, monkeypatch) -> None:
    _project(tmp_path, n=10, n_corrupt=4)
    monkeypatch.setattr(stage, "build_encoder", lambda *a, **k: _TinyImage())
    monkeypatch.setattr(stage, "check_encoders", lambda named: None)  # no real weights needed
    params = parse_params({"device": "cpu", "data": {"name": "x"},
                           "extract": {"num_workers": 0, "chunk_size": 4}})
    with pytest.raises(TooManyFailuresError, match=r"extract image \[tiny-image\]: 4 of 10 inputs "
                       r"failed to decode \(40\.0% > extract\.max_failed_fraction=0\.05\)") as err:
        stage.run(params, tmp_path, progress=False)
    assert "item_idx 1: " in str(err.value) and "1.png" in str(err.value)
    out = feature_path(params, "image", tmp_path)
    assert not out.exists() and not chunk_dir_for(out).exists()  # nothing half-done is kept
    # Under the threshold the stage passes and the count is in the summary.
    params = parse_params({"device": "cpu", "data": {"name": "x"},
                           "extract": {"num_workers": 0, "chunk_size": 4, "max_failed_fraction": 0.5}})
    summary = stage.run(params, tmp_path, progress=False)
    assert summary["modalities"]["image"]["failed"] == 4
    on_disk = json.loads((modality_features_dir(params, "image", tmp_path) / "summary.json").read_text())
    assert on_disk["modality"] == "image" and on_disk["failed"] == 4
    assert "6 extracted, 0 missing, 4 failed" in stage.summary_line(summary)


def test_unreadable_pictures_are_counted_at_ingest_and_shown_in_the_report(tmp_path):
    """Below the failure threshold nothing fails, so the counts must be visible: the ingest report
    counts pictures whose header cannot be read, the HTML report shows extraction's count."""
    import json as _json

    from mmrec.data.images import unreadable_images
    from mmrec.report.stage import collect

    good = tmp_path / "ok.png"
    Image.new("RGB", (8, 8), "red").save(good)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    Image.new("RGB", (6000, 1), "red").save(tmp_path / "strip.png")
    got = unreadable_images(["ok.png", "broken.jpg", "strip.png"], tmp_path, max_pixels=10_000_000)
    assert got["count"] == 2
    assert [e["path"] for e in got["examples"]] == ["broken.jpg", "strip.png"]

    params = parse_params({"data": {"name": "x"}, "train": {"models": ["sasrec"]}})
    ingest = tmp_path / "data" / "x" / "ingest"
    ingest.mkdir(parents=True)
    (ingest / "report.json").write_text(_json.dumps({"stats": {"users": 3}, "images_unreadable": got}))
    feats = tmp_path / "data" / "x" / "features" / "image"
    feats.mkdir(parents=True)
    (feats / "summary.json").write_text(_json.dumps({"modality": "image", "items": 10, "missing": 2, "failed": 2}))
    data = collect(params, tmp_path)
    assert not any("report.json" in problem for problem in data.problems)   # found and read
    stats = data.dataset_stats
    assert stats["users"] == 3 and stats["images unreadable at ingest"] == 2
    assert stats["image inputs that failed to decode"] == "2 of 8"
