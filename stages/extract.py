"""DVC stage `extract`: ingest/items.parquet -> features/<modality>-<encoder slug>.parquet + summary.json.

Single process: `python stages/extract.py`. Several: `torchrun --nproc_per_node=N stages/extract.py`
(items are sharded by chunk across ranks; rank 0 merges). An interrupted run resumes from its
completed chunks.
"""

import os

from mmrec.cli import stage_main
from mmrec.config import load_params
from mmrec.features.stage import run, summary_line


def main() -> None:
    summary = run(load_params())
    if os.environ.get("RANK", "0") == "0":
        print(summary_line(summary))


if __name__ == "__main__":
    stage_main(main)
