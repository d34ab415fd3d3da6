"""DVC stage `report`: compare every trained model (see mmrec.report.stage)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from mmrec.entry import stage_main  # noqa: E402


def main() -> None:
    # Imported here, after stage_main has sized the thread pools (polars reads its size at import).
    from mmrec.config import load_params
    from mmrec.report.stage import run

    s = run(load_params())
    missing = f"; missing: {', '.join(s['missing'])}" if s["missing"] else ""
    print(f"report: {len(s['reported'])} models ({', '.join(s['reported']) or 'none'}){missing}, "
          f"{len(s['plots'])} plots, {s['seconds']:.1f}s -> {s['path']}/report.html")


if __name__ == "__main__":
    stage_main(main, torch=False)
