"""The extract stage: ingest/items.parquet -> features/<modality>-<encoder slug>.parquet + summary.json.

Runs single-process, or under `torchrun` (items sharded by chunk across ranks; rank 0 merges).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import torch

from mmrec.features.encoders import build_encoder, check_encoders
from mmrec.features.extract import (
    MODALITIES,
    Dist,
    extract_modality,
    modality_sources,
    read_items,
    torch_dist,
)
from mmrec.features.params import ExtractConfig
from mmrec.io import pick_device, write_json
from mmrec.paths import feature_path, features_dir, ingest_dir


def init_distributed() -> tuple[Dist, bool]:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPUs, gloo on CPUs).

    Returns the context and whether this call created the group (and so must destroy it).
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return torch_dist(), True
    return torch_dist(), False


def _device(params: ExtractConfig, d: Dist) -> torch.device:
    device = pick_device(params.device)
    if device.type == "cuda" and d.world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", d.rank)) % torch.cuda.device_count())
    return device


def run(params: ExtractConfig, root: Path = Path("."), *, progress: bool = True,
        max_chunks: Optional[int] = None) -> dict[str, Any]:
    """Extract every modality the items have; write the feature files and features/summary.json.

    Returns the summary (per modality: encoder, path, items, extracted, missing, failed, dims,
    seconds). `max_chunks` stops each modality after that many new chunks (resume later).
    """
    root = Path(root)
    t0 = time.perf_counter()
    d, owns_group = init_distributed()
    try:
        items_path = ingest_dir(params, root) / "items.parquet"
        items = read_items(items_path)
        device = _device(params, d)
        summary: dict[str, Any] = {"items": items.height, "modalities": {},
                                   "source": str(ingest_dir(params, Path(".")) / "items.parquet")}
        timings: dict[str, float] = {}
        # Every encoder that will run must resolve (weights found) before minutes are spent.
        check_encoders({m: getattr(params.extract, m).encoder for m in MODALITIES
                        if any(s is not None for s in modality_sources(items, m, root))})
        for modality in MODALITIES:
            sources = modality_sources(items, modality, root)
            if all(s is None for s in sources):
                summary["modalities"][modality] = {"skipped": f"no item has {modality}"}
                continue
            cfg = getattr(params.extract, modality)
            encoder = build_encoder(cfg.encoder, modality, cfg.tokens, device)
            encoder.max_pixels = params.data.images.max_pixels  # the downloader's bomb cap, too
            res = extract_modality(
                sources, encoder, feature_path(params, modality, root),
                batch_size=params.extract.batch_size, chunk_size=params.extract.chunk_size,
                num_workers=params.extract.num_workers, dist=d, progress=progress, max_chunks=max_chunks,
                max_failed_fraction=params.extract.max_failed_fraction)
            timings[modality] = res.pop("seconds")
            res.pop("encoded_here")
            res["path"] = str(feature_path(params, modality, Path(".")))  # root-relative: portable summary
            res["dims"] = {"vector": encoder.dim, "tokens": encoder.n_tokens,
                           "token_dim": encoder.token_dim if encoder.n_tokens else 0}
            summary["modalities"][modality] = res
            del encoder
        complete = all(m.get("complete", True) for m in summary["modalities"].values())
        if d.is_main and complete:
            # No timings in the file: same inputs -> byte-identical outputs (DVC skips downstream).
            write_json(summary, features_dir(params, root) / "summary.json")
        summary["seconds"] = time.perf_counter() - t0
        summary["timings"] = timings
        summary["complete"] = complete
        return summary
    finally:
        if owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def summary_line(summary: dict[str, Any]) -> str:
    """One line for the end of the stage."""
    parts = []
    for mod, r in summary["modalities"].items():
        if "skipped" in r:
            parts.append(f"{mod}: skipped ({r['skipped']})")
        elif not r.get("complete", True):
            parts.append(f"{mod}: partial ({r['chunks_resumed']}/{r['chunks']} chunks before this run)")
        else:
            secs = summary.get("timings", {}).get(mod, 0.0)
            parts.append(f"{mod}: {r['extracted']} extracted, {r['missing']} missing, {r['failed']} failed "
                         f"[{r['encoder']}, d={r['dims']['vector']}, {r['dims']['tokens']} tokens] "
                         f"-> {r['path']} ({secs:.1f}s)")
    return (f"extract: {summary['items']} items; " + "; ".join(parts)
            + f"; total {summary.get('seconds', 0.0):.1f}s")
