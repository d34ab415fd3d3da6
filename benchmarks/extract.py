"""Extract-stage throughput against a bare loop over the same model on pre-loaded tensors.

For each default encoder (MiniLM text, EfficientNet-Lite0 image), on the first `--items` items of
the sample (`data/<name>/ingest/items.parquet`; generated items when it is missing):

- bare:  inputs decoded, preprocessed and collated up front (untimed); timed loop of
         `encoder.encode(batch)` only — the ceiling for this model, batch size and device.
- stage: `extract_modality` end to end (decoding in DataLoader workers or the main process as
         the CPU budget allows, encode, float16 tokens, chunk files, merge), model already loaded.

Passes alternate (bare, stage, bare, stage, ...) and the best of each counts, so load from other
processes hits both alike. Prints items/s for both and the ratio stage/bare (goal >= 0.9).

    .venv/bin/python benchmarks/extract.py --items 256 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from mmrec.config import load_params
from mmrec.features.encoders import build_encoder
from mmrec.features.extract import extract_modality, modality_sources, read_items
from mmrec.io import pick_device
from mmrec.paths import ingest_dir
from mmrec.threads import budget, loader_split


def generated_items(n: int, folder: Path) -> pl.DataFrame:
    """Items with product-like titles and 400x400 drawn JPEGs, for when the sample is absent."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    words = "red blue wooden ceramic vintage modern lamp vase clock rug pillow frame candle mirror".split()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = Image.new("RGB", (400, 400), tuple(int(v) for v in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(img)
        for _ in range(5):
            x, y = (int(v) for v in rng.integers(0, 300, 2))
            d.ellipse((x, y, x + 80, y + 60), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        p = folder / f"{i}.jpg"
        img.save(p, quality=90)
        paths.append(str(p))
    texts = [" ".join(rng.choice(words, 12)) for _ in range(n)]
    return pl.DataFrame({"item_idx": pl.Series(range(1, n + 1), dtype=pl.Int32), "text": texts, "image_path": paths})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_pass(encoder, batches: list, n: int) -> float:
    """Items/s of one pass of encode() alone over pre-collated batches."""
    with torch.inference_mode():
        _sync(encoder.device)
        t0 = time.perf_counter()
        for b in batches:
            out = encoder.encode(b)
            del out
        _sync(encoder.device)
    return n / (time.perf_counter() - t0)


def stage_pass(encoder, sources: list[str], params, out: Path) -> float:
    """Items/s of one run of the stage's extraction into a fresh output."""
    t0 = time.perf_counter()
    res = extract_modality(sources, encoder, out, batch_size=params.extract.batch_size,
                           chunk_size=params.extract.chunk_size, num_workers=params.extract.num_workers,
                           progress=False)
    dt = time.perf_counter() - t0
    assert res["complete"] and res["extracted"] == len(sources), res
    return len(sources) / dt


def compare(encoder, sources: list[str], params, workdir: Path, repeats: int) -> tuple[float, float]:
    """Best-of-`repeats` items/s for bare and stage, interleaved so load drift hits both alike."""
    bs = params.extract.batch_size
    batches = [encoder.collate([encoder.load_item(s) for s in sources[i:i + bs]])
               for i in range(0, len(sources), bs)]  # decoded and preprocessed up front, untimed
    with torch.inference_mode():
        encoder.encode(batches[0])  # warm-up (allocator, kernels)
    bare = stage = 0.0
    for r in range(repeats):
        bare = max(bare, bare_pass(encoder, batches, len(sources)))
        stage = max(stage, stage_pass(encoder, sources, params, workdir / f"run{r}" / "features" / "x.parquet"))
    return bare, stage


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=256, help="items per modality (first N of the sample)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--root", default=".")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved bare/stage passes; best of each")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    device = pick_device(params.device)
    items_path = ingest_dir(params, args.root) / "items.parquet"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if items_path.exists():
            items, origin = read_items(items_path).head(args.items), str(items_path)
        else:
            items, origin = generated_items(args.items, tmp / "images"), "generated items"
        print(f"# extract benchmark: {items.height} items from {origin}; device={device}; "
              f"batch_size={params.extract.batch_size} num_workers={params.extract.num_workers} "
              f"chunk_size={params.extract.chunk_size}; torch threads={torch.get_num_threads()}; "
              f"image loader workers / model threads in the stage: "
              f"{'/'.join(map(str, loader_split(budget(), params.extract.num_workers)))}")
        print(f"{'encoder':42s} {'tokens':>6s} {'bare items/s':>13s} {'stage items/s':>14s} {'ratio':>6s}")
        for modality in ("text", "image"):
            cfg = getattr(params.extract, modality)
            sources = [s for s in modality_sources(items, modality, args.root) if s is not None]
            enc = build_encoder(cfg.encoder, modality, cfg.tokens, device)
            bare, stage = compare(enc, sources, params, tmp / modality, args.repeats)
            print(f"{cfg.encoder:42s} {enc.n_tokens:6d} {bare:13.1f} {stage:14.1f} {stage / bare:6.2f}", flush=True)
            del enc
    return 0


if __name__ == "__main__":
    sys.exit(main())
