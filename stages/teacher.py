"""DVC stage `teacher@<modality>`: KDSR teacher of one modality (denoising AE + dissected-correlation
codebook). `python stages/teacher.py text`; without an argument both modalities.

See mmrec.teacher.stage; outputs go to data/<name>/teacher/<modality>/<modality>-<encoder slug>/.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.entry import stage_main  # noqa: E402


def main() -> None:
    # Imported here, after stage_main has sized the thread pools (polars reads its size at import).
    from mmrec.config import load_params
    from mmrec.teacher.stage import MODALITIES, run

    wanted = sys.argv[1:] or list(MODALITIES)
    if any(m not in MODALITIES for m in wanted):
        sys.exit(f"usage: python stages/teacher.py [{'|'.join(MODALITIES)}] ...  (got {' '.join(wanted)})")
    s = run(load_params(), Path("."), wanted)
    parts = [f"{m}: skipped ({v['skipped']})" if "skipped" in v else
             f"{m}: {v['items']} items, AE best epoch {v['best_epoch']} (valid {v['best_valid_loss']:.4f}), "
             f"{v['pairs']} pairs, {v['dead_codes']} dead codes -> {v['dir']}"
             for m, v in s["modalities"].items()]
    print(f"teacher ({s['device']}, {s['seconds']:.1f}s): " + "; ".join(parts))


if __name__ == "__main__":
    stage_main(main)
