"""DVC stage `evaluate@<model>`: full-ranking metrics of one trained model (see mmrec.evaluate.stage)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.entry import model_argument, stage_main  # noqa: E402


def main() -> None:
    # Imported here, after stage_main has sized the thread pools (polars reads its size at import).
    from mmrec.config import load_params
    from mmrec.evaluate.stage import run

    s = run(load_params(), Path("."), model_argument("evaluate"))
    print(f"evaluate {s['model']}: {s['n_items']} items, valid {s['valid_users']} / test {s['test_users']} users, "
          + ", ".join(f"{k}={v:.4f}" for k, v in s.items() if "@" in k)
          + f", {s['seconds']:.1f}s -> {s['path']}")


if __name__ == "__main__":
    stage_main(main)
