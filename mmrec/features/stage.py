"""The extract stage, one modality per DVC stage (`extract@text`, `extract@image`):
ingest/items.parquet (text) or ingest/images.parquet (image) ->
features/<modality>/<modality>-<encoder slug>.parquet + summary.json.

Runs single-process, or under `torchrun` (items sharded by chunk across ranks; rank 0 merges).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from mmrec.data.manifest import hash_images, read_manifest
from mmrec.features.encoders import build_encoder, check_encoders
from mmrec.features.extract import (
    MODALITIES,
    Dist,
    modality_sources,
    read_items,
    torch_dist,
)
from mmrec.features.params import ExtractConfig
from mmrec.features.reuse import extract_reusing, text_keys
from mmrec.io import pick_device, write_json
from mmrec.paths import (
    SUMMARY_FILE,
    extract_cache_path,
    feature_path,
    image_manifest_path,
    ingest_dir,
    modality_features_dir,
)


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


def _remove(files: Sequence[Path], d: Dist) -> None:
    """Delete a modality's outputs (rank 0 only: the ranks of one run share them)."""
    if d.is_main:
        for f in files:
            f.unlink(missing_ok=True)


def modality_inputs(params: ExtractConfig, modality: str, root: Path) -> tuple[list[Optional[str]], list[Optional[str]], Path]:
    """(sources, content keys, the file they come from) of one modality.

    Text comes from items.parquet, keyed by the text's sha256. Images come from the ingest
    manifest (path and sha256 of each picture), the only input of `extract@image`; a project
    ingested before the manifest existed falls back to items.parquet and hashes the files here.
    """
    if modality == "image":
        manifest = image_manifest_path(params, root)
        if manifest.exists():
            df = read_manifest(manifest)
            sources = [None if p is None else str(p if Path(p).is_absolute() else root / p)
                       for p in df["path"].to_list()]
            return sources, df["sha256"].to_list(), manifest
    items_path = ingest_dir(params, root) / "items.parquet"
    sources = modality_sources(read_items(items_path), modality, root)
    keys = text_keys(sources) if modality == "text" else hash_images(sources)[1]
    return sources, keys, items_path


def run(params: ExtractConfig, root: Path = Path("."), *, modalities: Sequence[str] = MODALITIES,
        progress: bool = True, max_chunks: Optional[int] = None) -> dict[str, Any]:
    """Extract `modalities` (default both); per modality write its feature file and
    features/<modality>/summary.json (the folder is the DVC output of `extract@<modality>`).

    Returns the summary (per modality: encoder, path, items, extracted, reused, missing, failed,
    dims). `max_chunks` stops each modality after that many new chunks (resume later).
    """
    root = Path(root)
    t0 = time.perf_counter()
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modality {unknown}; known: {', '.join(MODALITIES)}")
    d, owns_group = init_distributed()
    try:
        device = _device(params, d)
        summary: dict[str, Any] = {"items": 0, "modalities": {}}
        timings: dict[str, float] = {}
        pools: dict[str, dict[str, int]] = {}
        inputs = {m: modality_inputs(params, m, root) for m in modalities}
        # Every encoder that will run must resolve (weights found) before minutes are spent.
        check_encoders({m: getattr(params.extract, m).encoder for m, (sources, _, _) in inputs.items()
                        if any(s is not None for s in sources)})
        for modality in modalities:
            sources, keys, src_file = inputs[modality]
            summary["items"] = len(sources)
            rel_src = str(src_file.relative_to(root)) if src_file.is_relative_to(root) else str(src_file)
            outputs = (feature_path(params, modality, root),
                       modality_features_dir(params, modality, root) / SUMMARY_FILE)
            # This run replaces them (as DVC deletes them first): a failed or partial run must
            # never leave the old pair, or a half-spliced file, for training to read, and an
            # "absent" record never sits beside an old feature file.
            _remove(outputs, d)
            if all(s is None for s in sources):
                res: dict[str, Any] = {"skipped": f"no item has {modality}"}
            else:
                cfg = getattr(params.extract, modality)
                encoder = build_encoder(cfg.encoder, modality, cfg.tokens, device)
                encoder.max_pixels = params.data.images.max_pixels  # the downloader's bomb cap, too
                try:
                    res = extract_reusing(
                        sources, keys, encoder, outputs[0], extract_cache_path(params, modality, root),
                        batch_size=params.extract.batch_size, chunk_size=params.extract.chunk_size,
                        num_workers=params.extract.num_workers, dist=d, progress=progress,
                        max_chunks=max_chunks, max_failed_fraction=params.extract.max_failed_fraction)
                except BaseException:
                    _remove(outputs, d)
                    raise
                timings[modality] = res.pop("seconds")
                pools[modality] = res.pop("pools")  # like timings: machine-dependent, not in summary.json
                res.pop("encoded_here")
                res["path"] = str(feature_path(params, modality, Path(".")))  # root-relative: portable summary
                res["dims"] = {"vector": encoder.dim, "tokens": encoder.n_tokens,
                               "token_dim": encoder.token_dim if encoder.n_tokens else 0}
                del encoder
            summary["modalities"][modality] = res
            if d.is_main and res.get("complete", True):
                # No timings in the file: same inputs -> byte-identical outputs (DVC skips downstream);
                # `reused` stays out too: reusing vectors must not make the file differ from a fresh run.
                write_json({"modality": modality, "items": len(sources), "source": rel_src,
                            **{k: v for k, v in res.items() if k not in ("reused", "cache_discarded")}},
                           modality_features_dir(params, modality, root) / SUMMARY_FILE)
        summary["seconds"] = time.perf_counter() - t0
        summary["timings"] = timings
        summary["pools"] = pools
        summary["complete"] = all(m.get("complete", True) for m in summary["modalities"].values())
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
            pool = summary.get("pools", {}).get(mod)
            threads = (f", {pool['model_threads']} model threads + {pool['loader_workers']} loader workers"
                       if pool else "")
            discarded = f"(cache discarded: {r['cache_discarded']}) " if r.get("cache_discarded") else ""
            parts.append(f"{mod}: {r['extracted']} extracted, {r['missing']} missing, {r['failed']} failed, "
                         f"{r.get('reused', 0)} reused {discarded}"
                         f"[{r['encoder']}, d={r['dims']['vector']}, {r['dims']['tokens']} tokens] "
                         f"-> {r['path']} ({secs:.1f}s{threads})")
    return (f"extract: {summary['items']} items; " + "; ".join(parts)
            + f"; total {summary.get('seconds', 0.0):.1f}s")
