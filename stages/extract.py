"""DVC stage `extract`: ingest/items.parquet -> features/<modality>-<encoder slug>.parquet + summary.json.

Single process: `python stages/extract.py`. Several: `torchrun --nproc_per_node=N stages/extract.py`
(items are sharded by chunk across ranks; rank 0 merges). An interrupted run resumes from its
completed chunks.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.cli import stage_main  # noqa: E402
from mmrec.config import load_params  # noqa: E402
from mmrec.features.stage import run, summary_line  # noqa: E402


def main() -> None:
    summary = run(load_params())
    if os.environ.get("RANK", "0") == "0":
        print(summary_line(summary))


if __name__ == "__main__":
    stage_main(main)
