"""DVC stage `teacher`: KDSR teacher per modality (denoising AE + dissected-correlation codebook).

See mmrec.teacher.stage; outputs go to data/<name>/teacher/<modality>-<encoder slug>/.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.cli import stage_main  # noqa: E402
from mmrec.config import load_params  # noqa: E402
from mmrec.teacher.stage import run  # noqa: E402


def main() -> None:
    s = run(load_params())
    parts = [f"{m}: {v['items']} items, AE best epoch {v['best_epoch']} (valid {v['best_valid_loss']:.4f}), "
             f"{v['pairs']} pairs, {v['dead_codes']} dead codes -> {v['dir']}"
             for m, v in s["modalities"].items()]
    print(f"teacher ({s['device']}, {s['seconds']:.1f}s): " + "; ".join(parts))


if __name__ == "__main__":
    stage_main(main)
