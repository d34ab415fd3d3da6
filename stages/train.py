"""Train one model of `train.models`: `python stages/train.py <model>` (works under torchrun)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrec.entry import model_argument, stage_main  # noqa: E402


def main() -> None:
    # Imported here, after stage_main has sized the thread pools (polars reads its size at import).
    from mmrec.config import load_params
    from mmrec.train import ddp
    from mmrec.train.stage import run


    params = load_params()
    try:
        summary = run(params, Path("."), model_argument("train"))
        is_main = ddp.rank() == 0
    finally:
        ddp.shutdown()
    if is_main:
        print(f"train {summary['model']} ({summary['arch']}): {summary['users']} users, "
              f"{summary['items']} items, modalities {summary['modalities'] or 'none'}, "
              f"{summary['epochs']} epochs (best {summary['best_epoch']}), "
              f"{summary['seconds']}s -> {summary['output']}")


if __name__ == "__main__":
    stage_main(main)
