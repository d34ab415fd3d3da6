"""DVC stage `extract@<modality>`: one modality's features.

`python stages/extract.py text` reads ingest/items.parquet; `python stages/extract.py image` reads
the image manifest ingest/images.parquet. Each writes data/<name>/features/<modality>/. Without an
argument both modalities run (outside DVC). Several processes: `torchrun --nproc_per_node=N
stages/extract.py image` (items are sharded by chunk across ranks; rank 0 merges). An interrupted
run resumes from its completed chunks; a re-run encodes only items whose content changed.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.entry import stage_main  # noqa: E402


def main() -> None:
    # Imported here, after stage_main has sized the thread pools (polars reads its size at import).
    from mmrec.config import load_params
    from mmrec.features.extract import MODALITIES
    from mmrec.features.stage import run, summary_line

    wanted = sys.argv[1:] or list(MODALITIES)
    if any(m not in MODALITIES for m in wanted):
        sys.exit(f"usage: python stages/extract.py [{'|'.join(MODALITIES)}] ...  (got {' '.join(wanted)})")
    summary = run(load_params(), modalities=wanted)
    if os.environ.get("RANK", "0") == "0":
        print(summary_line(summary))


if __name__ == "__main__":
    stage_main(main)
