"""DVC stage `recommend@<model>`: every user's top-k items for serving (see mmrec.serving.export)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.entry import model_argument, stage_main  # noqa: E402


def main() -> None:
    # Imported here, after stage_main has sized the thread pools (polars reads its size at import).
    from mmrec.config import load_params
    from mmrec.serving.export import run

    s = run(load_params(), Path("."), model_argument("recommend"))
    print(f"recommend {s['model']}: top-{s['k']} of {s['items']} items for {s['users']} users "
          f"({s['rows']} rows), {s['seconds']:.1f}s ({s['users_per_s']} users/s) -> {s['path']}")


if __name__ == "__main__":
    stage_main(main)
