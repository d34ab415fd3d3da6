"""Fixtures for the extract stage: tiny items.parquet with PIL-drawn images (one corrupt, one missing)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from features_helpers import FIXTURES, TEXTS, scene


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project root with data/t/ingest/items.parquet: 11 items, images for most.

    item 3: corrupt JPEG; item 4: image file missing; item 5: no image (null);
    item 11: absolute image path. Texts: item 3 null, item 5 empty.
    """
    img_dir = tmp_path / "data" / "raw" / "t" / "images"
    img_dir.mkdir(parents=True)
    paths: list[str | None] = []
    for i in range(len(TEXTS)):
        idx = i + 1
        if idx == 3:
            (img_dir / "3.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
            paths.append("data/raw/t/images/3.jpg")
        elif idx == 4:
            paths.append("data/raw/t/images/does-not-exist.jpg")
        elif idx == 5:
            paths.append(None)
        else:
            scene(idx).save(img_dir / f"{idx}.jpg", quality=90)
            rel = f"data/raw/t/images/{idx}.jpg"
            paths.append(str(tmp_path / rel) if idx == 11 else rel)
    items = pl.DataFrame({
        "item_idx": pl.Series(range(1, len(TEXTS) + 1), dtype=pl.Int32),
        "item_id": [f"I{i:03d}" for i in range(len(TEXTS))],
        "text": TEXTS,
        "image_path": paths,
        "has_text": [bool(t) for t in TEXTS],
        "has_image": [p is not None for p in paths],
        "n_train": pl.Series([3] * len(TEXTS), dtype=pl.Int32),
    })
    # rows shuffled on disk: the stage must order by item_idx itself
    out = tmp_path / "data" / "t" / "ingest" / "items.parquet"
    out.parent.mkdir(parents=True)
    items.sample(fraction=1.0, shuffle=True, seed=1).write_parquet(out)
    return tmp_path


@pytest.fixture(scope="session")
def minilm():
    from mmrec.features.encoders import build_encoder

    return build_encoder("sentence-transformers:all-MiniLM-L6-v2", "text", tokens=8)


@pytest.fixture(scope="session")
def effnet():
    from mmrec.features.encoders import build_encoder

    return build_encoder("efficientnet-lite0", "image", tokens=True)


@pytest.fixture()
def tiny_clip(monkeypatch):
    """A tiny open_clip ViT config (registered from tests/fixtures) and the random-weights opt-in."""
    import open_clip

    open_clip.add_model_config(FIXTURES / "open_clip" / "mmrec-tiny-vit.json")
    monkeypatch.setenv("MMREC_ALLOW_RANDOM_WEIGHTS", "1")
    return "open_clip:mmrec-tiny-vit:none"


@pytest.fixture()
def reuse_encoders(monkeypatch, minilm, effnet):
    """Let stage.run reuse the session's loaded encoders (same names and token settings)."""
    import mmrec.features.stage as stage

    real = stage.build_encoder
    loaded = {("sentence-transformers:all-MiniLM-L6-v2", 8): minilm, ("efficientnet-lite0", True): effnet}

    def build(name, modality, tokens=0, device="cpu"):
        return loaded.get((name, tokens)) or real(name, modality, tokens, device)

    monkeypatch.setattr(stage, "build_encoder", build)
